/*
 * kernels/cuda/cuda_gemm.cu — row-major GEMMs of the CUDA backend on cuBLASLt.
 *
 * cuBLAS is column-major. A row-major matrix X[r, c] with leading dimension
 * ld is, read column-major, X^T [c, r] with the same ld. So the row-major
 *     C[M,N] = op(A)[M,K] op(B)[K,N]
 * is the column-major
 *     C^T[N,M] = op(B)^T[N,K] op(A)^T[K,M]
 * i.e. one cuBLAS call with the operands swapped (B first), m = N, n = M,
 * and each transpose flag kept as it is (the column-major view of B already
 * is B^T). The three GEMMs of a linear layer y = x W^T (HF W[out,in]) are
 *     forward       y[N,out]  = x[N,in]  W^T        cu_gemm(0,1, N,out,in)
 *     input grad    dx[N,in] += dy[N,out] W         cu_gemm(0,0, N,in,out)
 *     weight grad   dW[out,in] += dy^T x  (fp32)    cu_gemm(1,0, out,in,N)
 *
 * Precision: inputs in the activation dtype (bf16 or fp32), fp32 compute
 * (CUBLAS_COMPUTE_32F: no TF32, so fp32 mode is true fp32), output in the
 * activation dtype or fp32 (weight gradients accumulate straight into the
 * fp32 master gradients with beta = 1).
 *
 * Plans: descriptors + the heuristic's algorithm are cached per (shape,
 * dtypes, transposes, pointer alignments, bias) in a small open-addressing
 * table, so after the first step of a shape a GEMM is one cublasLtMatmul.
 * When cuBLASLt offers no algorithm (odd shapes / alignments), cublasGemmEx
 * does the product and mf_cu_bias_add the bias. With deterministic mode the
 * heuristic is restricted to algorithms without split-K reductions.
 */
#include "kernels/cuda/cuda_state.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { N_PLANS = 512, PROBE = 16 };

typedef struct cu_gemm_key {
    int tA, tB, M, N, K, lda, ldb, ldc;
    int abt, cdt, bias, det;
    int al_a, al_b, al_c; /* pointer alignments (bytes, up to 256) */
} cu_gemm_key;

struct cu_gemm_plan {
    cu_gemm_key key;
    int used, use_lt;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc; /* column-major operands: la describes B, lb describes A */
    cublasLtMatmulAlgo_t algo;
};

static int align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && a % (uintptr_t)al) al >>= 1;
    return al;
}

static uint64_t key_hash(const cu_gemm_key *k)
{
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof(*k); i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static cudaDataType_t cuda_type(int dt)
{
    return dt == MF_CU_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void plan_destroy(cu_gemm_plan *p)
{
    if (!p->used) return;
    /* destroy calls only fail on a NULL descriptor, which we skip */
    if (p->op) (void)cublasLtMatmulDescDestroy(p->op);
    if (p->la) (void)cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) (void)cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) (void)cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof(*p));
}

void cu_gemm_plans_free(cu_state *cs)
{
    if (!cs->plans) return;
    for (size_t i = 0; i < cs->n_plans; i++) plan_destroy(&cs->plans[i]);
    free(cs->plans);
    cs->plans = NULL;
    cs->n_plans = 0;
}

/* Descriptors and algorithm for key k (p is zeroed and marked used first, so
 * plan_destroy cleans up whatever was created when this fails). */
static int plan_build(cu_state *cs, cu_gemm_plan *p, const cu_gemm_key *k, mf_err *err)
{
    memset(p, 0, sizeof(*p));
    p->used = 1;
    p->key = *k;
    cudaDataType_t abt = cuda_type(k->abt), ct = cuda_type(k->cdt);
    cublasOperation_t opa = k->tB ? CUBLAS_OP_T : CUBLAS_OP_N; /* column-major A = row-major B */
    cublasOperation_t opb = k->tA ? CUBLAS_OP_T : CUBLAS_OP_N; /* column-major B = row-major A */
    MF_CUBLAS_TRY(err, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    MF_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    MF_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    if (k->bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS; /* + bias[row of column-major D] = bias[out feature] */
        int32_t bt = (int32_t)ct;
        MF_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        MF_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
    }
    /* stored (pre-op) shapes of the column-major operands */
    uint64_t a_rows = opa == CUBLAS_OP_N ? k->N : k->K, a_cols = opa == CUBLAS_OP_N ? k->K : k->N;
    uint64_t b_rows = opb == CUBLAS_OP_N ? k->K : k->M, b_cols = opb == CUBLAS_OP_N ? k->M : k->K;
    MF_CUBLAS_TRY(err, cublasLtMatrixLayoutCreate(&p->la, abt, a_rows, a_cols, k->ldb));
    MF_CUBLAS_TRY(err, cublasLtMatrixLayoutCreate(&p->lb, abt, b_rows, b_cols, k->lda));
    MF_CUBLAS_TRY(err, cublasLtMatrixLayoutCreate(&p->lc, ct, (uint64_t)k->N, (uint64_t)k->M, k->ldc));

    cublasLtMatmulPreference_t pref;
    MF_CUBLAS_TRY(err, cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = cs->gemm_ws_size;
    uint32_t al_a = (uint32_t)k->al_b, al_b = (uint32_t)k->al_a, al_c = (uint32_t)k->al_c;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                            sizeof(ws));
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c));
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c));
    if (s == CUBLAS_STATUS_SUCCESS && k->det) {
        uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none,
                                                 sizeof(none));
    }
    cublasLtMatmulHeuristicResult_t res;
    int count = 0;
    if (s == CUBLAS_STATUS_SUCCESS) {
        memset(&res, 0, sizeof(res));
        cublasStatus_t h = cublasLtMatmulAlgoGetHeuristic(cs->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res,
                                                          &count);
        /* NOT_SUPPORTED = no algorithm for this configuration: use the fallback */
        if (h != CUBLAS_STATUS_SUCCESS && h != CUBLAS_STATUS_NOT_SUPPORTED) s = h;
        if (h != CUBLAS_STATUS_SUCCESS) count = 0;
    }
    (void)cublasLtMatmulPreferenceDestroy(pref);
    MF_CUBLAS_TRY(err, s);
    p->use_lt = count > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (p->use_lt) p->algo = res.algo;
    return 0;
}

/* The cached plan for k, building it on a miss (evicting a slot when the
 * probe window is full). */
static int plan_get(cu_state *cs, const cu_gemm_key *k, cu_gemm_plan **out, mf_err *err)
{
    if (!cs->plans) {
        cs->plans = (cu_gemm_plan *)calloc(N_PLANS, sizeof(cu_gemm_plan));
        if (!cs->plans) return mf_err_set(err, MF_ENOMEM, "cuda backend: out of host memory for GEMM plans");
        cs->n_plans = N_PLANS;
    }
    size_t h = (size_t)(key_hash(k) % N_PLANS), slot = h;
    for (int i = 0; i < PROBE; i++) {
        cu_gemm_plan *p = &cs->plans[(h + i) % N_PLANS];
        if (p->used && !memcmp(&p->key, k, sizeof(*k))) {
            *out = p;
            return 0;
        }
        if (!p->used) {
            slot = (h + i) % N_PLANS;
            break;
        }
    }
    cu_gemm_plan *p = &cs->plans[slot];
    plan_destroy(p);
    int rc = plan_build(cs, p, k, err);
    if (rc) {
        plan_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

int cu_gemm(cu_state *cs, int tA, int tB, int M, int N, int K, float alpha, const void *A, int lda, const void *B,
            int ldb, float beta, void *C, mf_cu_dtype cdt, int ldc, const void *bias, mf_err *err)
{
    if (M <= 0 || N <= 0 || K <= 0 || lda <= 0 || ldb <= 0 || ldc <= 0 || (bias && beta != 0.0f))
        return mf_err_set(err, MF_EINTERNAL, "cuda gemm: bad arguments M=%d N=%d K=%d lda=%d ldb=%d ldc=%d%s", M, N,
                          K, lda, ldb, ldc, bias && beta != 0.0f ? " (bias needs beta = 0)" : "");
    cu_gemm_key k;
    memset(&k, 0, sizeof(k));
    k.tA = tA;
    k.tB = tB;
    k.M = M;
    k.N = N;
    k.K = K;
    k.lda = lda;
    k.ldb = ldb;
    k.ldc = ldc;
    k.abt = (int)cs->dt;
    k.cdt = (int)cdt;
    k.bias = bias != NULL;
    k.det = cs->deterministic;
    k.al_a = align_of(A);
    k.al_b = align_of(B);
    k.al_c = align_of(C);
    if (k.bias && (cdt != cs->dt || align_of(bias) < 16)) k.bias = 0; /* bias added separately below */
    cu_gemm_plan *p = NULL;
    int rc = plan_get(cs, &k, &p, err);
    if (rc) return rc;
    if (p->use_lt) {
        if (k.bias)
            MF_CUBLAS_TRY(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                              sizeof(bias)));
        MF_CUBLAS_TRY(err, cublasLtMatmul(cs->lt, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc,
                                          &p->algo, cs->gemm_ws, cs->gemm_ws_size, cs->st));
        if (bias && !k.bias) MF_CU_TRY(err, mf_cu_bias_add(C, bias, M, N, cdt, cs->st));
        return 0;
    }
    cublasOperation_t opa = tB ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t abt = cuda_type(cs->dt), ct = cuda_type(cdt);
    MF_CUBLAS_TRY(err, cublasGemmEx(cs->blas, opa, opb, N, M, K, &alpha, B, abt, ldb, A, abt, lda, &beta, C, ct, ldc,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) MF_CU_TRY(err, mf_cu_bias_add(C, bias, M, N, cdt, cs->st));
    return 0;
}
