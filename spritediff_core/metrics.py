"""Image quality metrics for evaluating generated frames against ground truth, on 8-bit images.

- `psnr`: over every pixel and channel, peak 255; capped at `PSNR_CAP_DB` (identical images would be infinite).
- `ssim`: Wang et al. 2004 as in their reference `ssim.m`: 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, L = 255, the mean of the SSIM map over the windows that lie wholly inside the image; colour
  images are scored per channel and the channels averaged (so colour errors count, not only luminance).
- `foreground_iou`: intersection over union of two boolean silhouettes; two empty silhouettes agree (1.0).
- `seam_ratio`: how a cycle's wrap-around step (last frame back to the first) compares with its other steps.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import InvalidInputError

PEAK = 255.0
PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise InvalidInputError(f"{what}: images differ in shape, {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise InvalidInputError(f"{what}: expected (H, W) or (H, W, C) images, got shape {a.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two 8-bit images (values 0..255), at most `PSNR_CAP_DB`."""
    a, b = _same_shape(a, b, "psnr")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(PEAK ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two 8-bit images (see the module notes); 1.0 for identical images."""
    a, b = _same_shape(a, b, "ssim")
    height, width = a.shape[:2]
    if min(height, width) < SSIM_WINDOW:
        raise InvalidInputError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {width}x{height}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)
    radius = SSIM_WINDOW // 2

    def local_mean(image: np.ndarray) -> np.ndarray:
        # Cropping the radius keeps only windows wholly inside the image ("valid"), so the border mode is moot.
        filtered = cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
        return filtered[radius:height - radius, radius:width - radius]

    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mean_a, mean_b = local_mean(a), local_mean(b)
    variance_a = local_mean(a * a) - mean_a ** 2
    variance_b = local_mean(b * b) - mean_b ** 2
    covariance = local_mean(a * b) - mean_a * mean_b
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)
                / ((mean_a ** 2 + mean_b ** 2 + c1) * (variance_a + variance_b + c2)))
    return float(ssim_map.mean())  # channels have equal size: the mean of per-channel means


def foreground_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """|A and B| / |A or B| of two boolean masks; 1.0 when both are empty (nothing to disagree on)."""
    mask_a, mask_b = _same_shape(np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool), "foreground_iou")
    union = int(np.count_nonzero(mask_a | mask_b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(mask_a & mask_b)) / union


def seam_ratio(frames) -> float | None:
    """Mean absolute difference between a cycle's last and first frame, divided by the mean of the same
    difference over its other neighbouring pairs: 1 when the loop's seam looks like every other step, above 1
    when it jumps. None for fewer than 3 frames or when no other pair differs (nothing to compare with)."""
    frames = [np.asarray(frame, dtype=np.float64) for frame in frames]
    if len(frames) < 3:
        return None
    for frame in frames[1:]:
        _same_shape(frames[0], frame, "seam_ratio")
    steps = [float(np.mean(np.abs(b - a))) for a, b in zip(frames, frames[1:])]
    other = sum(steps) / len(steps)
    if other == 0.0:
        return None
    return float(np.mean(np.abs(frames[0] - frames[-1]))) / other
