"""PyTorch eager against grm-jax: one GRM training step of the same shapes, interleaved in one process.

    python benchmarks/torch_step.py --model vit_b --batch 2 --repeats 5     # minutes on a 2-core CPU
    python benchmarks/torch_step.py --model micro --repeats 1               # smoke (seconds)

The official PyTorch code is not part of this repository. To compare against an eager framework on
the same machine and in the same run, this script builds in PyTorch a network that does the work of
a GRM training step, layer for layer at the same shapes:

* patch embedding (16x16 conv) of template and search, position embeddings, the tokens concatenated;
* ``depth`` blocks: LayerNorm (eps 1e-6), qkv, attention, proj, MLP with exact GELU, drop-path off;
  in every dividing block the division predictor (search token ++ max-pooled template,
  Linear(2D,384) GELU Linear(384,192) GELU Linear(K), log-softmax), hard Gumbel-Softmax with the
  straight-through sample, and the epsilon-softmax with the (B,N,N) float relation mask;
* the centre head: three branches of 4 x (conv3x3, BatchNorm, ReLU) and a conv1x1;
* a loss with the same terms (focal on the score map, L1 on the size and offset maps) and weights;
* backward, ``clip_grad_norm_(0.1)`` and AdamW with the three parameter groups.

It is a timing stand-in written for this benchmark, not the official code: its outputs are not
compared with anything. grm-jax runs its real train step (``roofline.train_case``: donated state,
fixed device batch). Both sides use every core (``torch.set_num_threads(os.cpu_count())``). Each
round times one torch step then one jax step (warmed up; medians over ``--repeats`` rounds) and the
CPU time of the process (all threads). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import roofline  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM, ModelConfig, init_variables  # noqa: E402
from grm_jax.model.attention import RELATION_RULE, SOFTMAX_EPS  # noqa: E402


def build_torch_step(cfg: ModelConfig, batch: int):
    """(callable running one eager PyTorch training step, parameter count)."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    torch.manual_seed(0)
    d, heads, nz = cfg.embed_dim, cfg.num_heads, cfg.num_template_tokens
    rule = torch.tensor(RELATION_RULE)
    select = nn.functional.one_hot(torch.tensor(cfg.search_categories), 3).float()  # (K, 3)

    def mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.GELU()] if i < len(sizes) - 2 else [])
        return nn.Sequential(*layers)

    class Block(nn.Module):
        def __init__(self, divide: bool):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = mlp([d, int(d * cfg.mlp_ratio), d])
            self.predict = mlp([2 * d, *cfg.predictor_hidden, len(cfg.search_categories)]) if divide else None

        def attend(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            logits = (q @ k.transpose(-2, -1)) * (d // heads) ** -0.5
            if self.predict is None:
                return logits.softmax(-1) @ v
            target = x[:, :nz].max(dim=1, keepdim=True).values.expand(-1, n - nz, -1)
            log_probs = self.predict(torch.cat([x[:, nz:], target], -1)).log_softmax(-1)
            soft = nn.functional.gumbel_softmax(log_probs, tau=1.0, hard=True)
            policy = torch.cat([torch.tensor([1.0, 0.0, 0.0]).expand(b, nz, 3), soft @ select], 1)
            mask = policy @ rule @ policy.transpose(1, 2)
            eye = torch.eye(n)
            mask = mask + (1.0 - mask) * eye
            w = (logits - logits.amax(-1, keepdim=True)).exp() * mask[:, None]
            probs = (w + SOFTMAX_EPS / n) / (w.sum(-1, keepdim=True) + SOFTMAX_EPS)
            return probs @ v

        def forward(self, x):
            b, n, _ = x.shape
            x = x + self.proj(self.attend(self.norm1(x)).transpose(1, 2).reshape(b, n, d))
            return x + self.mlp(self.norm2(x))

    def branch(out):
        widths, layers, c_in = [cfg.head_channels // 2 ** i for i in range(4)], [], d
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            c_in = w
        return nn.Sequential(*layers, nn.Conv2d(c_in, out, 1))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            p = cfg.patch_size
            self.embed = nn.Conv2d(3, d, p, stride=p)
            self.pos_z = nn.Parameter(torch.zeros(1, nz, d))
            self.pos_x = nn.Parameter(torch.zeros(1, cfg.num_search_tokens, d))
            self.blocks = nn.ModuleList(Block(i in cfg.divide_layers) for i in range(cfg.depth))
            self.norm = nn.LayerNorm(d, eps=1e-6)
            self.ctr, self.size, self.offset = branch(1), branch(2), branch(2)

        def forward(self, z, s):
            tz = self.embed(z).flatten(2).transpose(1, 2) + self.pos_z
            tx = self.embed(s).flatten(2).transpose(1, 2) + self.pos_x
            x = torch.cat([tz, tx], 1)
            for blk in self.blocks:
                x = blk(x)
            side = cfg.search_size // cfg.patch_size
            grid = self.norm(x)[:, nz:].transpose(1, 2).reshape(x.shape[0], d, side, side)
            score = self.ctr(grid).sigmoid().clamp(1e-4, 1 - 1e-4)
            return score, self.size(grid).sigmoid().clamp(1e-4, 1 - 1e-4), self.offset(grid)

    net = Net().train()
    groups = {"head": [], "backbone": [], "divide": []}  # grm_jax.train.optimizer's three groups
    for name, param in net.named_parameters():
        in_backbone = name.startswith(("embed", "pos_", "blocks", "norm."))
        groups["divide" if ".predict." in name else "backbone" if in_backbone else "head"].append(param)
    lrs = {"head": 4e-4, "backbone": 4e-5, "divide": 4e-4}
    opt = torch.optim.AdamW([{"params": ps, "lr": lrs[g]} for g, ps in groups.items()], weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size, generator=gen)
    s = torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=gen)
    side = cfg.search_size // cfg.patch_size
    heatmap = torch.rand(batch, 1, side, side, generator=gen)
    target = torch.full((batch, 2, side, side), 0.3)

    def step():
        score, size, offset = net(z, s)
        pos = heatmap.eq(1).float()
        focal = -((1 - score) ** 2 * score.log() * pos
                  + (1 - heatmap) ** 4 * score ** 2 * (1 - score).log() * (1 - pos)).sum() / pos.sum().clamp(min=1)
        loss = focal + 5.0 * ((size - target).abs().mean() + (offset - target).abs().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 0.1)
        opt.step()
        return loss

    return step, sum(p.numel() for p in net.parameters())


def measure(model_name: str, batch: int, repeats: int) -> dict:
    import torch  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    cfg = roofline.model_config(model_name)
    variables = init_variables(GRM(cfg), jax.random.PRNGKey(0))
    jax_step, xla_flops = roofline.train_case(cfg, jnp.float32, batch, variables)
    torch_step, torch_params = build_torch_step(cfg, batch)
    jax_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"]))
    cases = {"pytorch eager (stand-in)": lambda: torch_step().item(), "grm-jax": jax_step}
    for fn in cases.values():
        roofline.measured_call(fn)
        roofline.measured_call(fn)
    costs = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            costs[k].append(roofline.measured_call(fn))
    rows = {k: {"ms": 1e3 * statistics.median(c["s"] for c in v),
                "cpu_ms": 1e3 * statistics.median(c["cpu_s"] for c in v),
                "faults": statistics.median(c["faults"] for c in v), "ms_all": [1e3 * c["s"] for c in v]}
            for k, v in costs.items()}
    return {"meta": roofline.meta(model_name, cfg, repeats) | {"batch": batch, "torch": torch.__version__,
                                                                 "torch_threads": torch.get_num_threads()},
            "rows": rows, "xla_gflop": xla_flops / 1e9, "params": {"torch": torch_params, "jax": jax_params}}


def markdown(out: dict) -> str:
    m, rows = out["meta"], out["rows"]
    ref = rows["pytorch eager (stand-in)"]
    lines = [f"{m['device_kind']} ({m['backend']}, {m['cpu_flags']}), {m['cpus']} CPUs, jax {m['jax']}, torch "
             f"{m['torch']} ({m['torch_threads']} threads), {m['date']}; model {m['model']} ({m['dims']}), batch "
             f"{m['batch']}; {m['repeats']} interleaved rounds, load average "
             + "/".join(f"{x:.1f}" for x in m["load_average"]), "",
             "| train step | ms (median) | x PyTorch | CPU ms (median) | x PyTorch, CPU time | GFLOP/s (XLA's count) "
             "| page faults |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['ms']:.1f} | {r['ms'] / ref['ms']:.2f} | {r['cpu_ms']:.1f} | "
                     f"{r['cpu_ms'] / ref['cpu_ms']:.2f} | {out['xla_gflop'] / r['ms'] * 1e3:.1f} | {r['faults']:.0f} |")
    lines += ["", f"parameters: torch {out['params']['torch'] / 1e6:.2f} M, jax {out['params']['jax'] / 1e6:.2f} M; "
              f"the step's FLOPs: {out['xla_gflop']:.2f} GFLOP (XLA cost analysis of the jax step, used for both rows)"]
    return "\n".join(lines)


def main(argv=None) -> dict:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(roofline.MODELS), default="micro")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    out = measure(args.model, args.batch, args.repeats)
    print(markdown(out), flush=True)
    return out


if __name__ == "__main__":
    main()
