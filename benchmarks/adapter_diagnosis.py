"""Where a trained run's distillation target moves a class: the teacher G against the adapted teacher Ga.

    python benchmarks/adapter_diagnosis.py RUN/config.yml --focus "white vase" [--render-every 5]
    python benchmarks/adapter_diagnosis.py RUN/config.yml --focus "white vase" --adapter-only

Scores every teacher tile of the run's 30 training views against the scene's class texts and compares the labels
with the scene's ground truth (per-class IoU over tiles):

- ``G``: the centred teacher features, the distillation target of plain distillation;
- ``Ga``: the run's trained adapter applied as training applies it, to batches of two language patches (each patch
  of the view with a random partner patch of a random view), the distillation target of every run with the adapter;
- ``F`` (with ``--render-every K``): the rendered features at the tile centres of every K-th view.

It also prints where the focus class's tiles go, and how many rows of a training batch the adapter's attention
spreads over (the exponential of its entropy: 1 is one row, 128 every row of laser-lite's batch).

``--adapter-only`` trains fresh adapters instead, on the same tiles and batches, with the self-training and text
augmentation losses only (no field, so no self-cross training), for 1500 steps (``--steps``) at laser-lite's
learning rate: three seeds (``--seeds``) each of our numerics and the reference's (input norm 10, unscaled
attention). It reports the same table. It separates what the adapter does to the target by itself from what
self-cross training (the pull of Ga toward the rendered features) adds in a trained run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from nerfstudio.utils.eval_utils import eval_setup
from torch import Tensor

from laser_ns.components import losses
from laser_ns.components.adapter import Adapter, AdapterConfig
from laser_ns.components.relevancy import cosine_scores
from laser_ns.model_config import PAPER_NUMERICS

REFERENCE_ADAPTER = {
    name.removeprefix("adapter."): value for name, value in PAPER_NUMERICS.items() if name.startswith("adapter.")
}
"""The reference's adapter numerics (xingy038/Laser; PAPER_NUMERICS): raw-CLIP input norm and plain q k^T."""


class Diagnosis:
    """The run's pipeline in training mode (teacher tiles loaded), its class texts and the scene's labels."""

    def __init__(self, config: Path, seed: int = 0) -> None:
        _, self.pipeline, _, _ = eval_setup(config, test_mode="val")
        self.model = self.pipeline.laser_model
        self.model.eval()
        self.dm = self.pipeline.datamanager
        self.tiles: list[Tensor] = self.dm.tile_features
        self.text = self.model.predictor.class_text
        self.names = list(self.model.predictor.class_names)
        self.patch = self.dm.patch_tiles()
        self.dim = self.text.shape[1]
        self.generator = torch.Generator().manual_seed(seed)

    def _rand(self, high: int) -> int:
        return int(torch.randint(high, (), generator=self.generator))

    def adapted(self, index: int, adapter: Adapter, g: Tensor) -> Tensor:
        """Ga of every tile of view ``index``, each patch adapted beside a random patch, as training batches it."""
        h, w = self.tiles[index].shape[:2]
        p = self.patch
        ids = torch.arange(h * w).reshape(h, w)
        total, cover = torch.zeros_like(g), torch.zeros(h * w)
        for top in sorted({*range(0, h - p + 1, p), h - p}):
            for left in sorted({*range(0, w - p + 1, p), w - p}):
                own = ids[top : top + p, left : left + p].reshape(-1)
                other = self.tiles[self._rand(len(self.tiles))]
                t, lft = self._rand(other.shape[0] - p + 1), self._rand(other.shape[1] - p + 1)
                partner = self.model.teacher_targets(other[t : t + p, lft : lft + p].reshape(-1, self.dim).float())
                total[own] += adapter(torch.cat([g[own], partner]))[1][: len(own)]
                cover[own] += 1
        return total / cover[:, None]

    def rendered(self, index: int) -> Tensor:
        """F at the tile centres of view ``index``."""
        h, w = self.tiles[index].shape[:2]
        cameras = self.dm.train_dataset.cameras
        height, width = float(cameras.height[index]), float(cameras.width[index])
        ys, xs = torch.meshgrid(
            (torch.arange(h) + 0.5) * height / h, (torch.arange(w) + 0.5) * width / w, indexing="ij"
        )
        coords = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=-1)
        bundle = cameras.generate_rays(camera_indices=torch.full((len(coords), 1), index), coords=coords)
        return torch.cat([self.model.rendered_features(bundle[k : k + 256]) for k in range(0, len(coords), 256)])

    @torch.no_grad()
    def confusions(self, adapter: Adapter | None, render_every: int = 0) -> dict[str, Tensor]:
        """[C, C] counts (truth row, label column) over the tiles of every view, for G, Ga and F."""
        num = len(self.names)
        result: dict[str, Tensor] = {}

        def add(key: str, truth: Tensor, features: Tensor) -> None:
            valid = truth >= 0
            labels = cosine_scores(features, self.text).argmax(-1)
            counts = torch.bincount(truth[valid] * num + labels[valid], minlength=num * num).reshape(num, num)
            result[key] = result.get(key, 0) + counts

        for index, tiles in enumerate(self.tiles):
            h, w = tiles.shape[:2]
            truth = self.dm.train_dataset.label_map(index, size=(h, w)).reshape(-1)
            g = self.model.teacher_targets(tiles.reshape(-1, self.dim).float())
            add("G", truth, g)
            add("Ga", truth, self.adapted(index, adapter, g) if adapter is not None else g)
            if render_every and index % render_every == 0:
                add("G, rendered views", truth, g)
                add("F, rendered views", truth, self.rendered(index))
        return result

    @torch.no_grad()
    def attention_spread(self, adapter: Adapter, batches: int = 50) -> float:
        """Mean over rows of exp(entropy) of the adapter's attention on training batches."""
        spreads = []
        for _ in range(batches):
            _, _, feats, _ = self.dm._sample_patches()
            weights = adapter.attention_weights(self.model.teacher_targets(feats))
            spreads.append(torch.exp(-(weights * weights.clamp_min(1e-12).log()).sum(-1)).mean())
        return float(torch.stack(spreads).mean())

    def train_adapter(self, numerics: dict, seed: int, steps: int = 1500, lr: float = 1e-3) -> Adapter:
        """A fresh adapter trained on the tiles with the self-training and text augmentation losses only."""
        torch.manual_seed(seed)
        adapter = AdapterConfig(**numerics).setup(dim=self.dim)
        optimizer = torch.optim.Adam(adapter.parameters(), lr=lr)
        text_aug = self.model.predictor.class_text_aug
        weight = self.model.config.text_aug_loss_mult
        for _ in range(steps):
            _, _, feats, _ = self.dm._sample_patches()
            orig, adapted = adapter(self.model.teacher_targets(feats))
            loss = losses.self_training_loss(adapted, orig) + weight * losses.text_augmentation_loss(
                adapted, orig, self.text, text_aug
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return adapter.eval()

    def report(self, title: str, counts: dict[str, Tensor], focus: str | None) -> None:
        print(f"\n{title}")
        print("| class | " + " | ".join(counts) + " |")
        print("|---" * (len(counts) + 1) + "|")
        ious = {key: 100 * m.diag() / (m.sum(0) + m.sum(1) - m.diag()).clamp_min(1) for key, m in counts.items()}
        for c, name in enumerate(self.names):
            print(f"| {name} | " + " | ".join(f"{ious[key][c]:.1f}" for key in counts) + " |")
        print("| mean | " + " | ".join(f"{ious[key].mean():.1f}" for key in counts) + " |")
        if focus is not None:
            c = self.names.index(focus)
            for key, m in counts.items():
                went = {self.names[j]: int(m[c, j]) for j in range(len(self.names)) if m[c, j] and j != c}
                came = {self.names[j]: int(m[j, c]) for j in range(len(self.names)) if m[j, c] and j != c}
                print(f"- {key}: {int(m[c, c])} {focus} tiles kept; lost to {went}; taken from {came}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="A trained run's config.yml (benchmarks/quality.py's workdir).")
    parser.add_argument("--focus", default=None, help="A class whose tiles to follow, e.g. 'white vase'.")
    parser.add_argument("--render-every", type=int, default=0, help="Also render F on every K-th view (0: never).")
    parser.add_argument("--adapter-only", action="store_true", help="Train fresh adapters without the field.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--adapter-only: adapter seeds.")
    parser.add_argument("--steps", type=int, default=1500, help="--adapter-only: training steps per adapter.")
    args = parser.parse_args()
    diagnosis = Diagnosis(args.config)
    if args.focus is not None and args.focus not in diagnosis.names:
        raise SystemExit(f"--focus {args.focus!r} is not a class of this scene; choose from {diagnosis.names}.")
    if args.adapter_only:
        for seed in args.seeds:
            for label, numerics in (("our numerics", {}), ("reference adapter numerics", REFERENCE_ADAPTER)):
                adapter = diagnosis.train_adapter(numerics, seed, steps=args.steps)
                spread = diagnosis.attention_spread(adapter)
                title = f"adapter alone, {label}, seed {seed}: attention spread over {spread:.1f} rows"
                diagnosis.report(title, diagnosis.confusions(adapter), args.focus)
        return
    adapter = diagnosis.model.adapter
    spread = f"attention spread over {diagnosis.attention_spread(adapter):.1f} rows" if adapter else "no adapter"
    counts = diagnosis.confusions(adapter, args.render_every)
    diagnosis.report(f"{args.config} ({spread})", counts, args.focus)


if __name__ == "__main__":
    main()
