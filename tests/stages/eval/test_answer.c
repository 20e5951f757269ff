/* tests/stages/eval/test_answer.c — mcq letter extraction and diagnosis matching. */
#include "tests/harness.h"
#include "stages/eval/answer.h"

#include <stdlib.h>

#define CHOICE(text, want) CHECK_INT(mf_answer_choice(text, 5, NULL), want)

TEST(test_answer_choice_reads_explicit_answer_markers)
{
    CHOICE("答案是B", 1);
    CHOICE("正确答案：C。因为延髓...", 2);
    CHOICE("根据题意，答案为（D）", 3);
    CHOICE("The answer is e.", 4);
    CHOICE("Answer: (A) 垂体窝", 0);
    CHOICE("选项A和B都不对，答案是C", 2); /* the answer marker beats the choice marker */
    CHOICE("我选B", 1);
    CHOICE("应选择 D", 3);
    CHOICE("故选C。", 2);
    CHOICE("答案：Ｂ", 1); /* fullwidth */
}

TEST(test_answer_choice_reads_leading_bracketed_and_standalone_letters)
{
    CHOICE("B", 1);
    CHOICE("  B. 棘孔", 1);
    CHOICE("C、破裂孔", 2);
    CHOICE("(D) 视神经管", 3);
    CHOICE("（A）垂体窝", 0);
    CHOICE("我认为是【E】", 4);
    CHOICE("应该是B吧", 1);
    CHOICE("维生素B12缺乏，A项正确", 0); /* B12 is not a standalone letter */
    CHOICE("BMI偏高，所以D", 3);
    CHOICE("Bleeding is likely", -1);                /* letters inside words are not answers */
    CHOICE("A patient with fever should take C", 2); /* "A patient": an article, not a choice */
    CHOICE("The answer is a fever", -1);             /* an article after the marker */
    CHOICE("F", -1);                                 /* out of range for 5 options */
    CHOICE("", -1);
    CHECK_INT(mf_answer_choice("答案是E", 4, NULL), -1); /* only A-D valid */
}

TEST(test_answer_choice_falls_back_to_a_unique_option_text)
{
    const char *opts[] = {"垂体窝", "棘孔", "破裂孔", "视神经管"};
    CHECK_INT(mf_answer_choice("属于蝶骨上的结构为棘孔", 4, opts), 1);
    /* two options' texts present: ambiguous, falls through to a standalone letter (none) */
    CHECK_INT(mf_answer_choice("垂体窝或视神经管", 4, opts), -1);
    /* an explicit letter wins over option text */
    CHECK_INT(mf_answer_choice("答案是C，不是棘孔", 4, opts), 2);
}

TEST(test_answer_diagnosis_matches_exactly_or_by_containment_after_normalisation)
{
    CHECK_INT(mf_answer_diagnosis("癫痫", "癫痫"), MF_DIAG_EXACT);
    CHECK_INT(mf_answer_diagnosis(" 癫痫。", "癫痫"), MF_DIAG_EXACT);
    CHECK_INT(mf_answer_diagnosis("ＨＩＶ感染", "HIV 感染"), MF_DIAG_EXACT);
    CHECK_INT(mf_answer_diagnosis("诊断：考虑为癫痫，建议脑电图检查", "癫痫"), MF_DIAG_CONTAINS);
    CHECK_INT(mf_answer_diagnosis("偏头痛", "癫痫"), MF_DIAG_NONE);
    CHECK_INT(mf_answer_diagnosis("。。", "癫痫"), MF_DIAG_NONE);
    CHECK_INT(mf_answer_diagnosis("癫痫", ""), MF_DIAG_NONE);
    char *n = mf_answer_normalize("Ｂ超 检查，CT！");
    CHECK_STR(n, "b超检查ct");
    free(n);
}
