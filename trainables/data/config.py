"""Where a trial's images come from: a folder on disk or the built-in synthetic set."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["SYNTHETIC_SCHEME", "DataConfig", "SyntheticConfig"]

SYNTHETIC_SCHEME = "synthetic:"
"""``data.path`` values starting with this name a built-in generated dataset."""

Ratio = Annotated[float, Field(gt=0, lt=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what NumPy, Optuna and torch all accept


class SyntheticConfig(BaseModel):
    """Parameters of the procedural corrosion dataset (``data.path: synthetic:corrosion``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_images: int = Field(600, ge=10, le=1_000_000)
    image_size: int = Field(128, ge=16, le=4096)
    seed: Seed = 0
    positive_fraction: Ratio = 0.5


class DataConfig(BaseModel):
    """The dataset section of a study; passed unchanged into every trial's config.

    Attributes:
        path: An image folder (``<class>/*`` or ``{train,val,test}/<class>/*`` for
            classification; ``images/`` + ``masks/`` or a COCO JSON for segmentation), or
            ``synthetic:corrosion`` for the generated demo set.
        format: ``auto`` detects the layout; ``coco`` reads ``annotations``.
        annotations: COCO instance-segmentation JSON (default: the one JSON in ``path``).
        synthetic: Generator parameters, used only with a ``synthetic:`` path.
        split: Train/val/test (or train/val) ratios for folders that are not split already;
            copies of one photo always land in the same split.
        split_seed: Seed of that split (fixed per study, independent of trial seeds).
        on_bad_files: ``skip`` leaves unusable files out (each listed in the study's
            ``data/skipped.txt``); ``stop`` refuses to start and shows the scan report.
        manifest: Set by corrotune: the study's split manifest that every trial reads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    format: Literal["auto", "coco"] = "auto"
    annotations: Optional[str] = None
    synthetic: SyntheticConfig = SyntheticConfig()
    split: tuple[Ratio, ...] = (0.7, 0.15, 0.15)
    split_seed: Seed = 0
    on_bad_files: Literal["skip", "stop"] = "skip"
    manifest: Optional[str] = None

    @field_validator("path")
    @classmethod
    def _known_scheme(cls, path: str) -> str:
        if path.startswith(SYNTHETIC_SCHEME) and path != SYNTHETIC_SCHEME + "corrosion":
            raise ValueError(f"unknown synthetic dataset {path!r}; the built-in one is 'synthetic:corrosion'")
        return path

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> "DataConfig":
        if len(self.split) not in (2, 3):
            raise ValueError(f"split takes 3 ratios (train, val, test) or 2 (train, val), got {list(self.split)}")
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, got {list(self.split)}")
        return self

    @property
    def is_synthetic(self) -> bool:
        return self.path.startswith(SYNTHETIC_SCHEME)
