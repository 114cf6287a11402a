"""MUKA: one student over the union of its teachers' label sets, trained on their text alone.

    python -m atm.main --config=configs/muka/amalgamate.py --workdir=W --config.amalgamate.teachers=T1,T2[,...]
    python -m atm.evaluate --workdir=W --split=test     # accuracy over the union and on each teacher's part

The teachers are fine-tuned runs on disjoint label sets (configs/muka/teacher.py, finetune.label_subset),
of any size, arrangement and vocabulary (each reads the raw text with its own tokenizer), on one data set
or several (MASSIVE + ATIS intents: a student over both label sets, on both texts). The student's own
shape is free (`:PRESET` picks one of atm.models.presets, NarrowBERT arrangements included) and it may
start from `config.init_from` or `config.student_init`. The method (atm/objectives/amalgamate.py):

    s_j = 1 − H(p̄_j)/log|C_j|, p̄_j the mean of K = amalgamate.mc_passes softmaxes with dropout ON
    q   = hard: the best-scored teacher's σ(z_j/τ), zero-padded into the union
          soft: Σ_j softmax(s/τ_s)_j·σ(z_j/τ), τ_s = amalgamate.score_temperature = 0.2
    L   = mean_x m(x)·τ²·KL(q ‖ σ(z_S/τ)),  m = |s_(1) − s_(2)| + 1e-6 (amalgamate.margin), τ = 1

`amalgamate.method=vanilla_kd|uhc` are the baselines; `amalgamate.scores=cached` computes the scores
once (python -m atm.amalgamate.score, or automatically before the first step). No gold label of a
training row is read.

Measured by reproduce/muka.py (results/muka/table.md, NOTES.md; 2×128 teachers and students from scratch,
750 steps, 3 seeds, 2026-12-07): MUKA soft + margin is below vanilla KD in every block (split2 49.0 vs 57.9%,
split4 21.9 vs 22.4%, heterogeneous teachers 47.5 vs 52.2%, MASSIVE + ATIS 24.5 vs 40.0% union test accuracy):
these small teachers are confident outside their label sets, so the Monte-Carlo scores pick the teacher that
knows a row less often than vanilla KD's logit mass does, and the margin cuts the step 3–16×.
Measured in tests/test_amalgamate.py (2 × 64 student, 150 steps, generated six-intent data, teachers on
the two halves, K = 4, 2026-12-02, 2 shared CPU cores at load 11–17): union test accuracy 85% (chance
17%; per half 69% / 98%) with two 2 × 64 teachers, 69% (33% / 100%) when the second teacher is 1 × 48 on
its own vocabulary.
"""
from atm.config import default_config
from atm.models import presets
from configs.finetune import massive


def get_config(preset: str = ""):
    c = massive.encoder_and_schedule(default_config("amalgamate"), steps=2000)
    if preset:
        c.model.update(presets.get(preset))
    c.amalgamate.update(teachers="", method="muka", target="soft", margin=True, mc_passes=16,
                        score_temperature=0.2, temperature=1.0, scores="online")
    return c
