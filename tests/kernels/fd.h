/*
 * tests/kernels/fd.h — finite-difference checking for the kernels' tests
 * (tests/kernels/test_ops_fd.c, test_arch_fd.c).
 *
 * Method: a random linear functional L = sum_i c_i y_i of an op's output; the
 * analytic gradient from the backward function is compared with the central
 * difference (L(x+h e_j) - L(x-h e_j)) / 2h evaluated in fp32. Tolerance: 2e-2
 * relative to the largest gradient component plus 1e-3 absolute — a wrong
 * formula is off by O(1). About 60 probes per variable.
 */
#ifndef MF_TESTS_KERNELS_FD_H
#define MF_TESTS_KERNELS_FD_H

#include <stddef.h>
#include <stdint.h>

typedef double (*fd_loss_fn)(void *ctx);

/* n normal(0, scale) floats, deterministic in seed (malloc'd; REQUIREs). */
float *fd_randv(size_t n, uint64_t seed, float scale);
/* sum c_i y_i in double. */
double fd_dotc(const float *c, const float *y, size_t n);
/* max |a-b| / max |b|. */
double fd_max_rel(const float *a, const float *b, size_t n);
/* Compare the analytic gradient g (n) of variable x with central differences
 * of f with step h (1e-2 for one op; smaller for whole models). */
void fd_check(const char *what, float *x, const float *g, size_t n, fd_loss_fn f, void *ctx, float h);

/* The whole model of config c (random weights), with prefix pc (may be NULL),
 * LoRA r2 with dropout lora_dropout on every projection (random B) and a score
 * head, everything trainable: the gradient of L = sum c_i logp_i + 0.3 c_i
 * values_i w.r.t. every parameter against central differences (h = 2e-3: the
 * model's loss is far more curved than one op; the O(h^2) truncation error
 * stays under the tolerance and fp32 noise ~1e-6 |L| / h stays small). The
 * dropout masks are the same on every evaluation (the rng state is reset).
 * Returns the number of parameters checked. */
struct mf_model_config;
struct mf_k_prefix_config;
int fd_check_model(const struct mf_model_config *c, const struct mf_k_prefix_config *pc, float lora_dropout);

#endif
