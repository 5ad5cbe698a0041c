"""Exact decoding over weights that lie on a GGUF block grid (Q4_1, Q8_0).

The default model comes from a Q4_1 GGUF file: every linear weight is `q * d + m` over blocks
of 32 (q a 4-bit integer, d and m fp16) and the tied embedding is Q8_0 (`q * d`, q 8-bit). The
fp32 tensors transformers builds from it hold those values exactly, so a decode step that reads
4 or 8 bits a weight instead of 16 or 32 gives the fp32 products, not an approximation. One
decode step is bound by the bytes of weights it reads (docs/performance.md), and these kernels
read a quarter of fbgemm fp16's.

`find_blocks` recovers the blocks from an fp32 weight and returns None unless it rebuilds every
value exactly (-0.0 may come back as 0.0), so weights of any other model are never rounded.
The kernels are a small C file built with the machine's C compiler on first use (a fraction of
a second, cached); without a compiler or AVX-512 `problem()` says why, and the fast path
keeps its fbgemm fp16 weights.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from chat.engine.hardware import cpu_flags

BLOCK = 32
# one library: the block kernels and a decode step's attention (chat/engine/decode_attention.py)
SOURCES = [Path(__file__).with_name("kernels") / name for name in ("blockquant.c", "attention.c")]
FLAGS = ["-O3", "-mavx512f", "-mfma", "-fopenmp", "-shared", "-fPIC"]
_P = ctypes.c_void_p
_I = ctypes.c_int


@dataclass(frozen=True)
class Blocks:
    """One [out, in] weight as GGUF blocks: `q` (Q4_1: two 4-bit values a byte), `d`, `m`."""

    kind: str  # "q4_1" or "q8_0"
    q: torch.Tensor  # uint8 [out, in/2] (q4_1) or int8 [out, in] (q8_0)
    d: torch.Tensor  # fp32 [out, in/32]
    m: torch.Tensor | None  # fp32 [out, in/32] (q4_1 only)

    @property
    def shape(self) -> tuple[int, int]:
        return self.d.shape[0], self.d.shape[1] * BLOCK

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.q, self.d, self.m) if t is not None)

    def __call__(self, x: torch.Tensor, norm: torch.Tensor | None = None, eps: float = 0.0,
                 lora: tuple[torch.Tensor, torch.Tensor] | None = None,
                 into: torch.Tensor | None = None) -> torch.Tensor:
        """x fp32 [rows, in] -> fp32 [rows, out]: W x', with x' the RMS norm of x times `norm`
        where given (else x), plus a LoRA's (x' a^T) b where `lora` = (a [r, in], b [r, out]);
        added into `into` (and returned) where given."""
        out, inner = self.shape
        x, y, accumulate = self._output(x, into)
        a, bt = lora if lora is not None else (None, None)
        library().block_matvec(
            4 if self.kind == "q4_1" else 8, x.data_ptr(), x.shape[0], inner,
            self.q.data_ptr(), self.d.data_ptr(), None if self.m is None else self.m.data_ptr(),
            y.data_ptr(), out, torch.get_num_threads(),
            None if norm is None else norm.data_ptr(), eps,
            None if a is None else a.data_ptr(), None if bt is None else bt.data_ptr(),
            0 if a is None else a.shape[0], accumulate)
        return y

    def prompt(self, x: torch.Tensor, norm: torch.Tensor | None = None, eps: float = 0.0,
               lora: tuple[torch.Tensor, torch.Tensor] | None = None,
               into: torch.Tensor | None = None) -> torch.Tensor:
        """As calling it, for a prompt's rows (compute-bound): each block of 32 of x' rounded
        to int16 against its largest value (error <= 2^-16 of it), W's q exact, the LoRA in
        fp32 torch. Needs AVX512-VNNI (`prompt_problem()`)."""
        wp, dp, mp = self.packed
        x, y, accumulate = self._output(x, into)
        # the LoRA reads x' too: the kernel hands the normed rows back
        prepared = torch.empty_like(x) if lora is not None and norm is not None else None
        if library().block_prompt(
                x.data_ptr(), x.shape[0], self.shape[1],
                None if norm is None else norm.data_ptr(), eps,
                None if prepared is None else prepared.data_ptr(), wp.data_ptr(),
                dp.data_ptr(), mp.data_ptr(), y.data_ptr(), self.shape[0],
                torch.get_num_threads(), accumulate):
            raise MemoryError(f"no memory to round a {tuple(x.shape)} prompt input")
        if lora is not None:
            y.addmm_(F.linear(x if prepared is None else prepared, lora[0]), lora[1])
        return y

    @functools.cached_property
    def packed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weight laid out for `prompt` (chat/engine/kernels/blockquant.c): q as int16 pairs
        [out/16, in/2, 16, 2], d and m as [out/16, in/32, 16], rows padded to 32 with zeros.
        Built on first use; 2 bytes a weight."""
        out, inner = self.shape
        if self.kind == "q4_1":  # a byte holds element j (low nibble) and j + 16 of its block
            nibbles = self.q.view(out, -1, 16)
            q = torch.cat([nibbles & 15, nibbles >> 4], dim=-1).view(out, inner)
        else:
            q = self.q
        m = self.m if self.m is not None else torch.zeros_like(self.d)
        pad = -out % 32
        q, d, m = (F.pad(t.to(dtype), (0, 0, 0, pad)) for t, dtype in
                   ((q, torch.int16), (self.d, torch.float32), (m, torch.float32)))
        panels = (out + pad) // 16
        wp = q.view(panels, 16, inner // 2, 2).permute(0, 2, 1, 3).contiguous()
        dp, mp = (t.view(panels, 16, -1).transpose(1, 2).contiguous() for t in (d, m))
        return wp, dp, mp

    def _output(self, x: torch.Tensor, into: torch.Tensor | None):
        """(x contiguous, the output tensor, whether to add to it), after checking them."""
        x = x.contiguous()
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise ValueError(f"block kernels take fp32 CPU inputs, not {x.dtype} on {x.device}")
        if x.dim() != 2 or x.shape[1] != self.shape[1]:
            raise ValueError(f"block kernels take [rows, {self.shape[1]}] inputs, not "
                             f"{list(x.shape)}")
        if into is None:
            return x, torch.empty(x.shape[0], self.shape[0]), 0
        if not into.is_contiguous() or into.shape != (x.shape[0], self.shape[0]) or (
                into.data_ptr() == x.data_ptr()):  # threads write y while others read x
            raise ValueError("into must be a contiguous [rows, out] tensor other than x")
        return x, into, 1


# ---------------------------------------------------------------------------- finding blocks


def find_blocks(weight: torch.Tensor) -> Blocks | None:
    """The Q4_1 or Q8_0 blocks that rebuild `weight` (fp32, CPU) exactly, else None."""
    if weight.dtype != torch.float32 or weight.device.type != "cpu" or weight.dim() != 2:
        return None
    out, inner = weight.shape
    if inner % BLOCK or not torch.isfinite(weight).all():
        return None
    # a few rows first: the weights of most models fail there, cheaply
    for rows in (weight[:4], weight):
        found = _q4_1(rows) or _q8_0(rows)
        if found is None:
            return None
    return found


def _fp16_exact(t: torch.Tensor) -> bool:
    return torch.equal(t.half().float(), t)


def _q4_1(weight: torch.Tensor) -> Blocks | None:
    blocks = weight.reshape(weight.shape[0], -1, BLOCK)
    m = blocks.amin(-1, keepdim=True)  # the quantizer maps each block's minimum to q = 0
    d = ((blocks.amax(-1, keepdim=True) - m) / 15).half().float()  # and its maximum to 15
    if not (_fp16_exact(m) and torch.isfinite(d).all()):
        return None
    q = torch.round((blocks - m) / torch.where(d > 0, d, 1.0))
    if q.min() < 0 or q.max() > 15 or not torch.equal(q * d + m, blocks):
        return None
    q = q.to(torch.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)  # gguf's layout: element j and j + 16 in a byte
    return Blocks("q4_1", packed.reshape(weight.shape[0], -1).contiguous(),
                  d.squeeze(-1).contiguous(), m.squeeze(-1).contiguous())


def _q8_0(weight: torch.Tensor) -> Blocks | None:
    blocks = weight.reshape(weight.shape[0], -1, BLOCK)
    d = (blocks.abs().amax(-1, keepdim=True) / 127).half().float()  # largest |w| is q = 127
    if not torch.isfinite(d).all():
        return None
    q = torch.round(blocks / torch.where(d > 0, d, 1.0))
    if q.abs().max() > 127 or not torch.equal(q * d, blocks):
        return None
    return Blocks("q8_0", q.to(torch.int8).reshape(weight.shape).contiguous(),
                  d.squeeze(-1).contiguous(), None)


# ---------------------------------------------------------------------------- the kernels


def problem() -> str | None:
    """Why the block kernels cannot run here (None: they can)."""
    loaded = _load()
    return loaded if isinstance(loaded, str) else None


def prompt_problem() -> str | None:
    """Why `Blocks.prompt` cannot run here (None: it can)."""
    if "avx512_vnni" not in cpu_flags():
        return "int16 prompt kernels need AVX512-VNNI (this CPU lacks avx512_vnni)"
    return problem()


def library() -> ctypes.CDLL:
    """The loaded kernels (RuntimeError saying why where `problem()` is not None)."""
    loaded = _load()
    if isinstance(loaded, str):
        raise RuntimeError(loaded)
    return loaded


@functools.cache
def _load() -> ctypes.CDLL | str:
    """The kernels, or why not: tried once per process, so a failing build is not retried for
    every version served."""
    if "avx512f" not in cpu_flags():
        return "block kernels need AVX-512 (this CPU lacks avx512f)"
    compiler = shlex.split(os.environ.get("CC", "")) or [
        found for found in (shutil.which("gcc"), shutil.which("cc")) if found][:1]
    if not compiler:
        return "block kernels need a C compiler (no gcc or cc on PATH)"
    try:
        try:
            lib = ctypes.CDLL(str(_build(compiler)))  # torch's libgomp, loaded, is bound
        except OSError:  # a cached library that does not load: build it once more
            lib = ctypes.CDLL(str(_build(compiler, fresh=True)))
    except (OSError, subprocess.SubprocessError, RuntimeError) as e:
        return f"building the block kernels failed: {e}"
    lib.block_matvec.argtypes = [_I, _P, _I, _I, _P, _P, _P, _P, _I, _I, _P, ctypes.c_float,
                                 _P, _P, _I, _I]
    lib.block_matvec.restype = None
    lib.block_prompt.argtypes = [_P, _I, _I, _P, ctypes.c_float, _P, _P, _P, _P, _P, _I, _I,
                                 _I]
    lib.block_prompt.restype = _I
    lib.decode_attention.argtypes = [_P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _I]
    lib.decode_attention.restype = _I
    return lib


def _build(compiler: list[str], fresh: bool = False) -> Path:
    """The shared library for this source, compiler and flags, built once into the cache."""
    target = library_path(compiler)
    if target.exists() and not fresh:
        return target
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([*compiler, *FLAGS, *map(str, SOURCES), "-o", tmp, "-lm"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"{' '.join(compiler)} exited {done.returncode}: "
                               f"{done.stderr.strip()[-300:]}")
        os.replace(tmp, target)  # atomic: a process beside this one sees no half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def library_path(compiler: list[str]) -> Path:
    """Where the library built from this source by `compiler` with FLAGS is cached."""
    key = hashlib.sha256(b"".join(source.read_bytes() for source in SOURCES)
                         + " ".join([*compiler, *FLAGS]).encode())
    return _cache_folder() / f"blockquant-{key.hexdigest()[:16]}.so"


def _cache_folder() -> Path:
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "learning-chat"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path(tempfile.gettempdir())
    return folder if os.access(folder, os.W_OK) else Path(tempfile.gettempdir())
