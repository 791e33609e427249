"""VRNN Explorer engine: the variational recurrent neural network of Chung et al. 2015 on raw speech.

    from vrnn import load_checkpoint, analyze, generate
    model = load_checkpoint("assets/checkpoints/vrnn-gauss.safetensors")
    a = analyze(model, waveform, sample_rate)  # Figure 2 quantities per 12.5 ms frame (any rate: vrnn.audio)
    audio = generate(model, seconds=3.0, seed=0)
"""

from .analysis import Analysis, analyze, generate
from .audio import FRAME_SIZE, SAMPLE_RATE, AudioError, AudioWarning, load_audio
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .config import FAMILIES, ModelConfig, TrainConfig, preset
from .fused import FusedVRNN
from .model import VRNN, VRNNOutput

__all__ = [
    "Analysis", "analyze", "generate", "FRAME_SIZE", "SAMPLE_RATE", "AudioError", "AudioWarning", "load_audio",
    "CheckpointError", "load_checkpoint", "read_checkpoint", "save_checkpoint", "FAMILIES", "ModelConfig",
    "TrainConfig", "preset", "VRNN", "VRNNOutput", "FusedVRNN",
]
