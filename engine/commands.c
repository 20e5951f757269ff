/*
 * engine/commands.c — the table of medflow commands, in the order `--help` lists them.
 * Add a command: write engine/cmd_<area>.c with mf_cmd_<name>() and add a line here
 * and an entry in docs/cli.md.
 */
#include "engine/cli.h"

#include <stddef.h>

extern const char mf_usage_generate[];
extern const char mf_usage_score[];
int mf_cmd_dag(int argc, char **argv);
int mf_cmd_diff(int argc, char **argv);
int mf_cmd_gc(int argc, char **argv);
int mf_cmd_generate(int argc, char **argv);
int mf_cmd_hash(int argc, char **argv);
int mf_cmd_kinds(int argc, char **argv);
int mf_cmd_lineage(int argc, char **argv);
int mf_cmd_log(int argc, char **argv);
int mf_cmd_report(int argc, char **argv);
int mf_cmd_run(int argc, char **argv);
int mf_cmd_score(int argc, char **argv);
int mf_cmd_show(int argc, char **argv);
int mf_cmd_stage_exec(int argc, char **argv);
int mf_cmd_status(int argc, char **argv);
int mf_cmd_store_materialize(int argc, char **argv);
int mf_cmd_store_put(int argc, char **argv);
int mf_cmd_tag(int argc, char **argv);
int mf_cmd_tokenize_text(int argc, char **argv);
int mf_cmd_validate(int argc, char **argv);
int mf_cmd_verify(int argc, char **argv);

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("medflow %s (%s)\n", MF_VERSION, MF_GIT_REV);
    return 0;
}

const mf_cmd mf_commands[] = {
    {"validate", mf_cmd_validate, "check graph files (YAML, kinds, params, inputs, types, cycles)",
     "Usage: medflow validate [--no-data] GRAPH...\n\n"
     "Load each graph file and check it completely: YAML syntax, known kinds, params (names, types,\n"
     "ranges, enums; ecosystem names like learning_rate are recognised and our name suggested),\n"
     "chat templates, input slots and references, input types, cycles and duplicate names (including\n"
     "names made by foreach), and its sources: every path exists (a glob matches something) and the\n"
     "first records of each JSONL source are of its declared format. Every error of a graph is\n"
     "printed, as FILE:LINE:COL: message (a data error at FILE:LINE of the data). Exit 0 when all\n"
     "are valid, 2 otherwise.\n\n"
     "  --no-data   skip the sources' files (a graph whose data is not on this machine yet)\n", 0},
    {"dag", mf_cmd_dag, "draw a graph's stages and dependencies",
     "Usage: medflow dag GRAPH [--format text|dot]\n\n"
     "text (default): sources, then stages layer by layer with the inputs of each slot.\n"
     "dot: Graphviz, e.g. medflow dag g.yaml --format dot | dot -Tsvg > g.svg\n", 0},
    {"kinds", mf_cmd_kinds, "list stage kinds, or describe one (slots, params, defaults)",
     "Usage: medflow kinds [KIND | --markdown]\n\n"
     "Without KIND: every stage kind with its version and a summary. With KIND: its input slots and\n"
     "what they accept, its output, and every param with type, range or choices, default and doc.\n"
     "--markdown: all of it as markdown (this is how docs/kinds.md is generated).\n", 0},
    {"status", mf_cmd_status, "show which stages are cached or stale, and why",
     "Usage: medflow status GRAPH [STAGE...] [--json] [--store DIR] [--rehash] [-q]\n\n"
     "One line per stage (with STAGE...: only those and what they need), in run order:\n"
     "  cached                     its key is in the action cache\n"
     "  stale: REASON; REASON      it would run, with every reason: never ran, forced, input slot `data`\n"
     "                             changed `sha256:ab12…→sha256:cd34…`, param `lr` changed `2e-05→1e-05`,\n"
     "                             kind version bumped 1→2, seed/precision changed\n"
     "  waiting: ...               an upstream stage is stale; decided once it has run (an identical\n"
     "                             output leaves this stage cached)\n"
     "--json prints [{stage, state, key, output, reasons}]. --rehash re-reads sources instead of trusting\n"
     "the stat cache. Exit 0 (also when stages are stale), 2 for an invalid graph. See docs/engine.md.\n", 0},
    {"run", mf_cmd_run, "run the stale stages of a graph",
     "Usage: medflow run GRAPH [STAGE...] [--force STAGE...] [--dry-run] [--keep-going] [-j N]\n"
     "                   [--gpus LIST] [--backend auto|cpu|cuda] [--store DIR] [--rehash] [-q] [-v]\n"
     "                   [--executor local|slurm] [--partition P] [--account A]\n\n"
     "Bring the graph (or the given STAGEs and what they need) up to date: stale stages run as child\n"
     "processes (`medflow stage-exec`), packed onto GPUs, cores and memory — or, with the Slurm\n"
     "executor, as one batch job each; outputs go to the store, every run that starts something is\n"
     "recorded in the ledger with its outcome.\n"
     "  --force STAGE...  rerun these even when cached (names up to the next option)\n"
     "  --dry-run         say what would run and why; start nothing\n"
     "  -k, --keep-going  after a failure, keep running stages that do not depend on it\n"
     "  -j N              at most N stages at once (default: as resources allow)\n"
     "  --gpus LIST       use these GPUs (e.g. 0,1,2,3) instead of those found; '' for none\n"
     "  --backend B       compute backend of the stages' models: auto (default: cuda when built with\n"
     "                    CUDA and the stage has a GPU, else cpu), cpu, or cuda (an error when\n"
     "                    unavailable); default from MEDFLOW_BACKEND. Not part of stage keys;\n"
     "                    the manifest records the backend and device each stage ran on\n"
     "  --executor E      where stages run: local (default: child processes on this machine) or\n"
     "                    slurm (an sbatch job per stage, submitted when it is ready; the store must\n"
     "                    be on a filesystem the nodes share); default from MEDFLOW_EXECUTOR, else\n"
     "                    the graph's `executor:`. See docs/cluster.md\n"
     "  --partition P     Slurm partition of stages whose resources name none\n"
     "  --account A       Slurm account of stages whose resources name none\n"
     "  --store DIR       the store (default: the graph's `store:`, else ./.medflow)\n"
     "  --rehash          re-read every source instead of trusting the stat cache\n"
     "  -q / -v           less / more output\n"
     "Exit status: 0 all up to date, 1 a stage failed, 2 usage or graph error, 130 interrupted.\n"
     "See docs/engine.md.\n", 0},
    {"stage-exec", mf_cmd_stage_exec, "run one stage from a spec file (used by the engine)",
     "Usage: medflow stage-exec SPEC\n\n"
     "Internal: the engine runs this as a child process for every stage rank (or mpirun / srun\n"
     "does, for ranks that take their rank from the launcher). SPEC is the JSON described in\n"
     "stages/stage.h. Exit 0 ok, 1 the stage failed, 2 the spec is unusable.\n", 1},
    {"log", mf_cmd_log, "list recorded runs, newest first",
     "Usage: medflow log [GRAPH] [-n N]\n\nList the runs recorded in the ledger (all graphs, or GRAPH's), newest\n"
     "first: commit id, GRAPH@N, time, outcome and stage counts. See docs/store.md.\n", 0},
    {"show", mf_cmd_show, "show a run, a stage's manifest or what produced a digest",
     "Usage: medflow show RUN|STAGE|DIGEST\n\nRUN: a commit id prefix, GRAPH@N or GRAPH (its latest run) -> run.json and\n"
     "its stages. STAGE: NAME (latest run that has it) or RUN:NAME -> its manifest.\n"
     "DIGEST: sha256:<hex> -> the manifest of the stage that produced it.\n", 0},
    {"lineage", mf_cmd_lineage, "the tree of artifacts a stage or digest came from",
     "Usage: medflow lineage STAGE|DIGEST\n\nPrint the tree of artifacts back to the sources: for every stage its\n"
     "kind, output digest, run and params; for every source its digest.\n", 0},
    {"diff", mf_cmd_diff, "which stages changed between two runs, and why",
     "Usage: medflow diff RUN RUN\n\nFor every stage: unchanged, added, removed, or changed with the reasons\n"
     "(kind version, params, input digests, output).\n", 0},
    {"verify", mf_cmd_verify, "re-hash every stored object and materialised tree (--repair: fix them)",
     "Usage: medflow verify [--repair]\n\nRe-hash every object in the store, every materialised tree and the ledger,\n"
     "name each corrupt one, and exit 1 if any is.\n\n"
     "--repair fixes what it can, from good copies only: runs whose engine was killed\n"
     "before recording them are recorded; a bad object is re-packed from its\n"
     "materialised tree when that still hashes right, else moved to damaged/ and\n"
     "recomputed by running the stage the ledger says produced it (from that run's\n"
     "graph file; the same digest comes back only while the stage's inputs are\n"
     "unchanged); modified trees and damaged action-cache entries are removed; a\n"
     "damaged ledger is moved aside and rebuilt from the run records in logs/.\n"
     "It names what it could not repair and exits 1 if anything is left.\n", 0},
    {"gc", mf_cmd_gc, "delete objects no ledger ref reaches",
     "Usage: medflow gc [--dry-run]\n\nDelete every stored object that no ledger branch or tag reaches (following\n"
     "refs.json), with its materialised tree and action-cache entries; report\n"
     "the bytes freed. --dry-run only reports.\n", 0},
    {"tag", mf_cmd_tag, "name a stage's output or a digest in the ledger",
     "Usage: medflow tag NAME STAGE|DIGEST\n\nCreate refs/tags/NAME in the ledger for the artifact, so gc keeps it and\n"
     "`git tag` lists it.\n", 0},
    {"report", mf_cmd_report, "print a graph's newest report (tables like the papers')",
     "Usage: medflow report GRAPH|RUN [-o DIR] [--store DIR]\n\n"
     "Find the newest run of the graph whose `report` stage succeeded, materialise its output from the\n"
     "store (verified), and print report.md: one table per eval task, models as rows. The run's own\n"
     "record is added from the ledger (its id, every stage's status, output digest and params, the\n"
     "stage DAG) and the result written to DIR (-o), else to <store>/reports/<graph>/: report.md,\n"
     "report.html (self-contained: tables, SVG loss curves, the run, the DAG) and dag.json.\n"
     "GRAPH is a graph file (its `store:` is used unless --store is given); RUN is GRAPH or GRAPH@N.\n", 0},
    {"generate", mf_cmd_generate, "continue a prompt with a model", mf_usage_generate, 0},
    {"score", mf_cmd_score, "per-token log-probs of a text under a model", mf_usage_score, 0},
    {"hash", mf_cmd_hash, "print the digest of files, directories or globs",
     "Usage: medflow hash [--rehash] [--no-cache] PATH...\n\nPrint the tree digest medflow gives each PATH as a source. Unchanged\n"
     "files come from the store's stat cache; --rehash reads everything,\n"
     "--no-cache ignores the cache. -v (global) prints what was read.\n", 0},
    {"tokenize-text", mf_cmd_tokenize_text, "encode a text file with a tokenizer.json",
     "Usage: medflow tokenize-text [--no-special] [--field F] [--decode] [--count [--repeat N]] TOKENIZER FILE\n\n"
     "Encode FILE with TOKENIZER (a tokenizer.json or a model directory). FILE.jsonl: the text in field F\n"
     "(default 'text') of each line; any other file: each line, newline included. Prints one line of ids\n"
     "per text; --decode prints the decoded text instead; --count prints totals, an id hash and MB/s\n"
     "(encode time only, --repeat N passes). --no-special skips the post-processor (BOS/EOS).\n", 1},
    {"version", cmd_version, "print the version",
     "Usage: medflow version\n\nPrint medflow's version and the git revision it was built from.\n", 0},
    {"store-materialize", mf_cmd_store_materialize, "materialise a stored digest (internal)",
     "Usage: medflow store-materialize DIGEST\n\nMaterialise DIGEST (verified) under trees/ and print its path.\n", 1},
    {"store-put", mf_cmd_store_put, "archive a directory into the store (internal)",
     "Usage: medflow store-put [--level N] [--threads N] DIR\n\nArchive DIR into the store and print its digest (benchmarks, debugging).\n", 1},
    {NULL, NULL, NULL, NULL, 0}};
