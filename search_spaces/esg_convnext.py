"""P004's ablation factors for the ``esg_convnext`` trainable, conditional where a module must exist.

Attention type per position (P004: ELA after the depthwise conv, SimAM after the expansion, GAM
after the projection; any of the four anywhere here), each module's own option only when that
module is somewhere in the network (``ela_kernel``, ``gam_rate``; ``simam_lambda`` also for
block2's SimAM), the two parallel branches with their fusion (only with a branch) and block2's
expansion (only with block2), the activations, and AdamW's lr, weight decay and drop path.
Every switch is suggested, so the trainable's ``variant`` preset does not matter here.

Keys mirror the trainable's config keys (the network's switches), so a suggestion is a config
override.
"""

from __future__ import annotations

from search_spaces._registry import register_space

ATTENTION_TYPES = ["none", "ela", "simam", "gam"]


@register_space("esg_convnext")
def space(trial) -> None:
    trial.suggest_float("lr", 1e-5, 1e-3, log=True)  # P004: 1e-4
    trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True)  # not stated in P004
    trial.suggest_float("drop_path_rate", 0.0, 0.3)
    chosen = {
        trial.suggest_categorical("attention_dw", ATTENTION_TYPES),
        trial.suggest_categorical("attention_expand", ATTENTION_TYPES),
        trial.suggest_categorical("attention_project", ATTENTION_TYPES),
    }
    block1 = trial.suggest_categorical("block1", [False, True])
    block2 = trial.suggest_categorical("block2", [False, True])
    if "ela" in chosen:
        trial.suggest_categorical("ela_kernel", [3, 5, 7])  # P004: 5; the ELA paper also uses 7
    if "gam" in chosen:
        trial.suggest_categorical("gam_rate", [2, 4, 8])  # GAM reference: 4
    if "simam" in chosen or block2:
        trial.suggest_float("simam_lambda", 1e-6, 1e-2, log=True)  # SimAM reference: 1e-4
    if block1 or block2:
        trial.suggest_categorical("branch_fusion", ["sum", "concat"])
    if block2:
        trial.suggest_categorical("branch_expansion", [2, 4, 6])
    trial.suggest_categorical("downsample_act", ["none", "prelu"])
    trial.suggest_categorical("block_act", ["gelu", "prelu"])
