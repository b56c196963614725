"""Everything about a leakage figure, in one package: what it means (`MetricSpec`, its limit
rules and baselines), how it is computed (`Metric`, on the scorer's `Truth`), the built-in
metrics, and the no-information guesses every score is read against. Attacks import their
metrics from here; the per-image and per-row computations come from torchmetrics and torch.
"""

from privpart.metrics.baselines import (
    label_mean_guess,
    majority_class,
    mean_image_guess,
    task_floor_baseline,
)
from privpart.metrics.builtin import (
    ACCURACY,
    FEATURE_MAE,
    METRICS_BY_OUTPUT,
    MSE,
    PSNR,
    REID,
    SSIM,
    limit_options,
    metric_specs,
)
from privpart.metrics.image import (
    PSNR_CAP_DB,
    SSIMWindow,
    image_scores,
    mse,
    psnr,
    ssim,
    ssim_window,
)
from privpart.metrics.metric import Metric, Truth
from privpart.metrics.spec import (
    LIMIT_RULES,
    BaselineSpec,
    Cap,
    Direction,
    Estimate,
    Interval,
    Limit,
    LimitOption,
    LimitRule,
    Margin,
    MetricSpec,
    Ratio,
)
from privpart.metrics.tabular import per_feature_mae, to_native_cells

__all__ = [
    "ACCURACY", "FEATURE_MAE", "LIMIT_RULES", "METRICS_BY_OUTPUT", "MSE", "PSNR", "PSNR_CAP_DB",
    "REID", "SSIM", "BaselineSpec", "Cap", "Direction", "Estimate", "Interval", "Limit",
    "LimitOption", "LimitRule", "Margin", "Metric", "MetricSpec", "Ratio", "SSIMWindow", "Truth",
    "image_scores", "label_mean_guess", "limit_options", "majority_class", "mean_image_guess",
    "metric_specs", "mse", "per_feature_mae", "psnr", "ssim", "ssim_window",
    "task_floor_baseline", "to_native_cells",
]  # fmt: skip
