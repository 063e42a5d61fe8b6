"""Where a trial's images come from: a folder on disk or the built-in synthetic set."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["SYNTHETIC_SCHEME", "DataConfig", "SyntheticConfig"]

SYNTHETIC_SCHEME = "synthetic:"
"""``data.path`` values starting with this name a built-in generated dataset."""

Ratio = Annotated[float, Field(gt=0, lt=1)]


class SyntheticConfig(BaseModel):
    """Parameters of the procedural corrosion dataset (``data.path: synthetic:corrosion``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_images: int = Field(600, ge=10)
    image_size: int = Field(128, ge=16)
    seed: int = Field(0, ge=0)
    positive_fraction: Ratio = 0.5


class DataConfig(BaseModel):
    """The dataset section of a study; passed unchanged into every trial's config.

    Attributes:
        path: An image folder (``<class>/*`` or ``{train,val,test}/<class>/*``), or
            ``synthetic:corrosion`` for the generated demo set.
        synthetic: Generator parameters, used only with a ``synthetic:`` path.
        split: Train/val/test ratios for folders that are not split already.
        split_seed: Seed of that split (fixed per study, independent of trial seeds).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    synthetic: SyntheticConfig = SyntheticConfig()
    split: tuple[Ratio, Ratio, Ratio] = (0.7, 0.15, 0.15)
    split_seed: int = 0

    @field_validator("path")
    @classmethod
    def _known_scheme(cls, path: str) -> str:
        if path.startswith(SYNTHETIC_SCHEME) and path != SYNTHETIC_SCHEME + "corrosion":
            raise ValueError(f"unknown synthetic dataset {path!r}; the built-in one is 'synthetic:corrosion'")
        return path

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> "DataConfig":
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, got {list(self.split)}")
        return self

    @property
    def is_synthetic(self) -> bool:
        return self.path.startswith(SYNTHETIC_SCHEME)
