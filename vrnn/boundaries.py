"""Boundary detection from per-frame signals, and boundary scores against a reference.

Signals (each a time axis in s and one value per time; a value at time t scores "a boundary at t"):

    delta        delta_t of Chung et al. 2015 Fig. 2: change of the posterior mean between frames t-1 and t,
                 placed where the two 12.5 ms frames meet (t x 12.5 ms)
    kl           KL_t (nats), placed at the start of frame t (the frame whose new samples surprised the prior)
    kl_dims      || KL_t^{1..Z} - KL_{t-1}^{1..Z} ||_2: how much the per-dimension KL vector changes
    flux         log-mel spectral flux: || logmel_t - logmel_{t-1} ||_2 over 40 mel bands of 25 ms windows
                 every 10 ms (librosa), both rises and falls (phones end as well as start)
    energy       | log E_t - log E_{t-1} |, E the energy of 25 ms windows every 10 ms
    uniform      N boundaries evenly spaced over the clip, N = the reference's boundary count (the clip's
                 phone rate); no signal, no peak picking
    random       white noise every 10 ms through the same peak picking (one per seed)

Peak picking (`PeakPicking`): local maxima at least `min_distance` s apart (scipy.signal.find_peaks) with a
prominence of at least `prominence` x the clip's signal range (max - min), or with `top_n` the N most
prominent such maxima, N = the number of reference boundaries.

Scores (`score`): a detected boundary is a hit when it lies within `tolerance` s (default 20 ms) of a
reference boundary, each reference and each detection used at most once (one-to-one: a maximum matching,
as mir_eval.util.match_events; on a line with a symmetric window the two-pointer sweep below finds one).
precision = hits / detections, recall = hits / references, F1 their harmonic mean,
over-segmentation OS = detections / references - 1, and the R-value of Rasanen, Laine & Altosaar 2009
("An improved speech segmentation quality measure: the R-value", Interspeech):
    r1 = sqrt((1 - recall)^2 + OS^2),  r2 = (recall - OS - 1) / sqrt(2),  R = 1 - (|r1| + |r2|) / 2.
Pooled scores add hits, detections and references over clips, then take the ratios.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .audio import FRAME_SECONDS, SAMPLE_RATE

TOLERANCE = 0.020  # s, the field's usual window (Kreuk et al. 2020; Rasanen et al. 2009)
BASELINE_HOP = 160  # samples = 10 ms between baseline frames
BASELINE_WIN = 400  # samples = 25 ms analysis window of the baselines
N_MELS_FLUX = 40  # mel bands of the spectral-flux baseline
RANDOM_SEEDS = (0, 1, 2, 3, 4)
MODEL_SIGNALS = ("delta", "kl", "kl_dims")
BASELINES = ("flux", "energy", "uniform", "random")


# -- peak picking ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeakPicking:
    """How boundaries are read off a signal.

    min_distance: s between two peaks (at least one frame); prominence: the least peak prominence as a
    fraction of the clip's signal range (max - min), 0 keeps every local maximum; top_n: keep the N most
    prominent peaks (N given by the caller, usually the reference's boundary count), ignoring `prominence`.
    """

    min_distance: float = 0.05
    prominence: float = 0.05
    top_n: bool = False

    def describe(self) -> str:
        how = "top-N by prominence (N = reference boundaries)" if self.top_n else f"prominence >= {self.prominence:g} x range"
        return f"peaks >= {self.min_distance * 1000:.0f} ms apart, {how}"


def pick_peaks(times: np.ndarray, values: np.ndarray, picking: PeakPicking = PeakPicking(),
               n: int | None = None) -> np.ndarray:
    """Boundary times (s, sorted) read off one signal: times, values [T], times evenly spaced.

    With `picking.top_n`, `n` (the number of boundaries wanted) is required. Non-finite values count as the
    signal's minimum.
    """
    from scipy.signal import find_peaks

    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if len(values) < 3:
        return np.zeros(0)
    v = np.where(np.isfinite(values), values, np.nan)
    lo, hi = np.nanmin(v), np.nanmax(v)
    v = np.nan_to_num(v, nan=lo)
    hop = float(np.median(np.diff(times)))
    distance = max(1, int(round(picking.min_distance / hop)))
    span = hi - lo
    if picking.top_n:
        if n is None:
            raise ValueError("top-N peak picking needs n, the number of boundaries to keep.")
        idx, props = find_peaks(v, distance=distance, prominence=0.0)
        keep = np.argsort(-props["prominences"], kind="stable")[: max(0, n)]
        idx = np.sort(idx[keep])
    else:
        idx, _ = find_peaks(v, distance=distance, prominence=picking.prominence * span if span > 0 else None)
    return times[idx]


# -- signals --------------------------------------------------------------------------------------------------

def frame_seconds(analysis) -> float:
    """s per frame of an `Analysis`: the model's own frame (x_dim samples; 12.5 ms for the bundled models)."""
    n = analysis.n_frames
    return len(analysis.waveform) / analysis.sample_rate / n if n else FRAME_SECONDS


def model_signals(analysis, kl_at: str = "start") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The latent signals of one `Analysis` (VRNN models; {} for RNN models): name -> (times [T] s, values [T]).

    A frame t covers [t, t + 1) x 12.5 ms (the model's frame length; 12.5 ms for the bundled models). delta_t and the per-dimension KL change compare frames t - 1 and
    t: their time is t x 12.5 ms. KL_t belongs to frame t: `kl_at` "start" (t x 12.5 ms) or "centre".
    """
    if not analysis.has_latent:
        return {}
    hop = frame_seconds(analysis)
    t = np.arange(analysis.n_frames) * hop  # frame starts, s
    kl_t = t if kl_at == "start" else t + hop / 2
    kd = analysis.kl_per_dim  # [T, Z] nats
    kl_dims = np.zeros(analysis.n_frames)
    kl_dims[1:] = np.sqrt(((kd[1:] - kd[:-1]) ** 2).sum(-1))
    return {"delta": (t, analysis.delta), "kl": (kl_t, analysis.kl), "kl_dims": (t, kl_dims)}


def _frames(waveform: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.util.frame(np.pad(waveform, BASELINE_WIN // 2, mode="reflect"), frame_length=BASELINE_WIN,
                              hop_length=BASELINE_HOP, axis=0)  # [T, 400], frame i centred at i x 10 ms


def spectral_flux(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel spectral flux: times [T] s, || logmel_t - logmel_{t-1} ||_2 [T] (dB), 40 mel bands of a 25 ms
    Hann window every 10 ms (librosa.feature.melspectrogram, power_to_db with a floor 80 dB below the
    clip's maximum). The value compares windows centred at (t - 1) and t x 10 ms: its time is between them."""
    import librosa

    m = librosa.feature.melspectrogram(y=np.asarray(waveform, np.float32), sr=sample_rate, n_fft=BASELINE_WIN,
                                       hop_length=BASELINE_HOP, win_length=BASELINE_WIN, n_mels=N_MELS_FLUX,
                                       center=True)  # [40, T]
    db = librosa.power_to_db(m, ref=np.max, top_db=80.0)
    flux = np.zeros(db.shape[1])
    flux[1:] = np.sqrt((np.diff(db, axis=1) ** 2).sum(0))
    times = (np.arange(db.shape[1]) - 0.5) * BASELINE_HOP / sample_rate
    return times, flux


def energy_change(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """| log E_t - log E_{t-1} | (dB) of 25 ms windows every 10 ms; times between the two windows' centres."""
    fr = _frames(np.asarray(waveform, np.float64))
    e = 10 * np.log10((fr ** 2).mean(1) + 1e-10)
    change = np.zeros(len(e))
    change[1:] = np.abs(np.diff(e))
    return (np.arange(len(e)) - 0.5) * BASELINE_HOP / sample_rate, change


def random_signal(duration: float, seed: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """White noise every 10 ms over the clip (a chance-level detector when peak-picked); seed: numpy's."""
    times = np.arange(int(duration * SAMPLE_RATE / BASELINE_HOP)) * BASELINE_HOP / SAMPLE_RATE
    return times, np.random.default_rng(seed).random(len(times))


def uniform_boundaries(duration: float, n: int) -> np.ndarray:
    """n boundaries evenly spaced inside (0, duration): duration x k / (n + 1), k = 1..n."""
    return duration * np.arange(1, n + 1) / (n + 1)


# -- scores ---------------------------------------------------------------------------------------------------

def match(reference: np.ndarray, estimate: np.ndarray, tolerance: float = TOLERANCE) -> list[tuple[int, int]]:
    """A maximum one-to-one matching of reference and estimated times (s) with |r - e| <= tolerance:
    [(i, j), ...] indices into the sorted reference and estimate (as mir_eval.util.match_events).

    A two-pointer sweep: the earliest unmatched pair within the window is always part of some maximum
    matching (the window is symmetric and both lists are ordered), so greedy is exact. The window is
    inclusive with 1 ns of slack for float rounding (0.12 - 0.10 is a hit at 20 ms; mir_eval, with no slack,
    can miss such exact ties).
    """
    r = np.sort(np.asarray(reference, np.float64))
    e = np.sort(np.asarray(estimate, np.float64))
    tol = tolerance + 1e-9
    i = j = 0
    pairs = []
    while i < len(r) and j < len(e):
        if abs(r[i] - e[j]) <= tol:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif e[j] < r[i]:
            j += 1
        else:
            i += 1
    return pairs


def count_hits(reference: np.ndarray, estimate: np.ndarray, tolerance: float = TOLERANCE) -> int:
    """Size of a maximum one-to-one matching (`match`) of reference and estimated times (s)."""
    return len(match(reference, estimate, tolerance))


@dataclass
class Scores:
    """Counts of one comparison (one clip or pooled); the ratios are properties."""

    hits: int = 0
    n_ref: int = 0
    n_est: int = 0

    def __add__(self, other: Scores) -> Scores:
        return Scores(self.hits + other.hits, self.n_ref + other.n_ref, self.n_est + other.n_est)

    @property
    def precision(self) -> float:
        return self.hits / self.n_est if self.n_est else 0.0

    @property
    def recall(self) -> float:
        return self.hits / self.n_ref if self.n_ref else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def over_segmentation(self) -> float:
        return self.n_est / self.n_ref - 1 if self.n_ref else 0.0

    @property
    def r_value(self) -> float:
        """Rasanen et al. 2009: 1 - (|r1| + |r2|) / 2 with r1 = sqrt((1 - HR)^2 + OS^2), r2 = (HR - OS - 1)/sqrt 2."""
        hr, os_ = self.recall, self.over_segmentation
        r1 = np.sqrt((1 - hr) ** 2 + os_ ** 2)
        r2 = (-os_ + hr - 1) / np.sqrt(2)
        return float(1 - (abs(r1) + abs(r2)) / 2)

    def to_dict(self) -> dict:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "r_value": self.r_value, "over_segmentation": self.over_segmentation}


def score(reference: np.ndarray, estimate: np.ndarray, tolerance: float = TOLERANCE) -> Scores:
    """Scores of estimated boundary times against reference times (s), one-to-one within `tolerance`."""
    return Scores(count_hits(reference, estimate, tolerance), len(reference), len(estimate))


def inside_speech(estimate: np.ndarray, ref, tolerance: float = TOLERANCE) -> np.ndarray:
    """The estimated times that lie inside a run of speech, more than `tolerance` from any silence edge and
    from the clip's ends: those are the ones scored against phone-to-phone boundaries only (a detection at
    a silence edge is then neither a hit nor a false alarm)."""
    est = np.asarray(estimate, np.float64)
    if len(est) == 0:
        return est
    speech = ref.speech_phones()
    starts = np.array([s.start for s in speech])
    ends = np.array([s.end for s in speech])
    k = np.searchsorted(starts, est, side="right") - 1
    inside = (k >= 0) & (est < ends[np.clip(k, 0, None)])
    edges = ref.silence_edges()
    if len(edges):
        near = np.abs(est[:, None] - edges[None, :]).min(1) <= tolerance
        inside &= ~near
    return est[inside]


def score_clip(ref, estimate: np.ndarray, tolerance: float = TOLERANCE) -> dict[str, Scores]:
    """{"all": scores over every phone boundary, "p2p": phone-to-phone boundaries only (silence edges and
    detections near them or inside silence left out)} for one clip's `Reference`."""
    return {"all": score(ref.boundaries(), estimate, tolerance),
            "p2p": score(ref.boundaries(phone_to_phone=True), inside_speech(estimate, ref, tolerance), tolerance)}


def detect(name: str, ref, picking: PeakPicking, waveform: np.ndarray | None = None, analysis=None,
           seed: int = 0, n: int | None = None, signals: dict | None = None) -> np.ndarray:
    """Boundary times (s) of one signal `name` (MODEL_SIGNALS or BASELINES) on one clip.

    `signals` may hold precomputed (times, values) per name; otherwise model signals come from `analysis` and
    baselines from `waveform`. n: boundaries wanted for top-N picking and the uniform baseline (default: the
    reference's count)."""
    n = len(ref.boundaries()) if n is None else n
    if name == "uniform":
        return uniform_boundaries(ref.duration, n)
    if signals is not None and name in signals:
        t, v = signals[name]
    elif name in MODEL_SIGNALS:
        t, v = model_signals(analysis)[name]
    elif name == "flux":
        t, v = spectral_flux(waveform)
    elif name == "energy":
        t, v = energy_change(waveform)
    elif name == "random":
        t, v = random_signal(ref.duration, seed)
    else:
        raise ValueError(f"Unknown signal {name!r}; choose from {', '.join(MODEL_SIGNALS + BASELINES)}.")
    return pick_peaks(t, v, picking, n)
