"""Trackers loaded with ``torch.hub`` (CoTracker3, MVTracker): the shared loading and identity.

``repo`` is a GitHub ``owner/name`` (needs network once) or a local clone with
``source="local"``; ``checkpoint`` loads your own weights into the hub
predictor's model; ``pretrained=False`` builds it with random weights (to test
the plumbing); ``model`` injects a ready callable (tests).  torch is imported
only when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from masktrack.errors import BackendError
from masktrack.plugins import options_from_signature
from masktrack.track.base import Tracker


def resolve_device(device: str | None) -> str:
    """``auto``/None -> cuda if available, else cpu."""
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_state(path: str) -> dict:
    """A checkpoint's model state dict (``state_dict``/``model`` wrappers and a ``model.`` prefix removed)."""
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    elif isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    return {(k[6:] if k.startswith("model.") else k): v for k, v in sd.items()}


class HubTracker(Tracker):
    """A tracker whose model comes from ``torch.hub.load(repo, entry)``."""

    label: ClassVar[str]  # for error messages
    default_repo: ClassVar[str]
    default_entry: ClassVar[str]
    strict_checkpoint: ClassVar[bool] = True

    def __init__(
        self,
        *,
        repo: str | None = None,
        source: str = "github",
        entry: str | None = None,
        checkpoint: str | None = None,
        pretrained: bool = True,
        device: str | None = "auto",
        model: Callable[..., Any] | None = None,
    ) -> None:
        self.repo, self.source, self.entry = repo or self.default_repo, source, entry or self.default_entry
        self.checkpoint, self.pretrained, self.device = checkpoint, pretrained, device
        self._model = model

    def fingerprint(self) -> dict[str, Any]:
        return {
            "tracker": self.name,
            "repo": self.repo,
            "entry": self.entry,
            "checkpoint": self.checkpoint,
            "pretrained": self.pretrained and self.checkpoint is None,
        }

    def hub_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the hub entry point."""
        return {}

    def prepare(self, model: Any) -> Any:
        """Last step after loading (move to the device, eval mode...)."""
        return model

    def model(self) -> Callable[..., Any]:
        if self._model is None:
            try:
                import torch
            except ImportError:
                raise BackendError(
                    f"the {self.name} tracker needs torch (pip install 'masktrack[trackers]')",
                    field="tracker",
                ) from None
            try:
                m = torch.hub.load(
                    self.repo,
                    self.entry,
                    source=self.source,
                    pretrained=self.pretrained and self.checkpoint is None,
                    trust_repo=True,
                    **self.hub_kwargs(),
                )
            except Exception as e:  # hub errors are many kinds (network, missing entry, bad repo)
                raise BackendError(
                    f"cannot load {self.label} from {self.repo!r} ({e.__class__.__name__}: {e})",
                    field="tracker",
                ) from None
            if self.checkpoint:
                getattr(m, "model", m).load_state_dict(
                    load_state(self.checkpoint), strict=self.strict_checkpoint
                )
            self._model = self.prepare(m)
        return self._model


# The typed options (masktrack.plugins): the constructor's keyword arguments, strict types and bounds.
HubTracker.Options = options_from_signature(HubTracker.__init__, "HubTrackerOptions")
