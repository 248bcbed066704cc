"""An emulated CUDA device for a CPU-only build of torch (the tested 2.13; it leans on torch internals).

Tensors on `cuda:0` are wrapper subclasses (`CudaTensor`) whose data stay on the CPU; they carry CUDA's dispatch
keys, so autocast("cuda") runs CUDA's own autocast kernels on them and autograd records them as CUDA tensors (the
C++ shim supplies the device guard and hooks it asks for). `CudaRules`, a dispatch mode, runs every op on the
CPU data and enforces what a real device would: no op mixing CUDA and CPU tensors (but CPU scalars and the ops
that copy between devices or index with CPU indices), a random draw only from a generator of its own device,
no `.numpy()` of a CUDA tensor (refused by torch for the subclass). `torch.cuda`'s Python functions that a
CPU-only build lacks are replaced for one visible device, with the emulated tensors' peak memory.
"""
from __future__ import annotations

import contextlib
import types
import weakref

import torch
import torch._dynamo  # noqa: F401 - its rules name torch.cuda's functions: imported before they are replaced
from torch.utils._python_dispatch import TorchDispatchMode

CUDA = torch.device("cuda", 0)
aten = torch.ops.aten

# ops that CUDA runs with tensors of both devices: copies between them, and indexing with CPU indices
CROSS_DEVICE = {aten.copy_.default, aten._to_copy.default, aten.index.Tensor, aten.index_put_.default,
                aten.index_put.default, aten._index_put_impl_.default}


class CudaTensor(torch.Tensor):
    """A tensor on cuda:0 whose data are the CPU tensor `cpu`."""

    @staticmethod
    def __new__(cls, cpu: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(cls, cpu.shape, strides=cpu.stride(), dtype=cpu.dtype,
                                                   storage_offset=cpu.storage_offset(), device=CUDA,
                                                   requires_grad=cpu.requires_grad)

    def __init__(self, cpu: torch.Tensor):
        self.cpu_data = cpu

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} on an emulated CUDA tensor outside emulated_cuda()")

    def numpy(self, *, force: bool = False):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first. (emulated CUDA)")

    def tolist(self):  # CUDA copies to the host (torch refuses it for subclasses)
        return self.cpu_data.tolist()

    def __reduce_ex__(self, protocol):
        # saved as the CPU tensor it holds; rohydr loads every checkpoint with map_location="cpu"
        return self.cpu_data.detach().__reduce_ex__(protocol)


class Memory:
    """Bytes of CPU storage held by emulated CUDA tensors: now and the peak since the last reset."""

    def __init__(self):
        self.holders: dict[int, int] = {}  # storage address -> wrappers holding it
        self.sizes: dict[int, int] = {}
        self.allocated = self.peak = 0

    def hold(self, tensor: CudaTensor) -> None:
        storage = tensor.cpu_data.untyped_storage()
        address = storage.data_ptr()
        if address not in self.holders:
            self.holders[address], self.sizes[address] = 0, storage.nbytes()
            self.allocated += storage.nbytes()
            self.peak = max(self.peak, self.allocated)
        self.holders[address] += 1
        weakref.finalize(tensor, self.release, address)

    def release(self, address: int) -> None:
        self.holders[address] -= 1
        if not self.holders[address]:
            del self.holders[address]
            self.allocated -= self.sizes.pop(address)


class CudaRules(TorchDispatchMode):
    """Every op on the CPU data, its outputs on the device CUDA would put them on, CUDA's refusals raised."""

    def __init__(self, memory: Memory):
        super().__init__()
        self.memory = memory

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        originals: dict[int, torch.Tensor] = {}  # id of what the op sees -> the tensor the caller passed
        devices: set[str] = set()

        def unwrap(x):
            if isinstance(x, CudaTensor):
                devices.add("cuda")
                originals[id(x.cpu_data)] = x
                return x.cpu_data
            if isinstance(x, torch.Tensor):
                if x.dim() > 0:
                    devices.add(x.device.type)
                originals[id(x)] = x
            elif isinstance(x, (list, tuple)):
                return type(x)(unwrap(item) for item in x)
            return x

        args = tuple(unwrap(x) for x in args)
        kwargs = {key: unwrap(x) for key, x in (kwargs or {}).items()}
        target = self._target_device(func, kwargs, devices)
        if kwargs.get("device") is not None:
            kwargs["device"] = torch.device("cpu")
        out = func(*args, **kwargs)

        def wrap(x):
            if isinstance(x, torch.Tensor):
                if id(x) in originals:  # an in-place op, or an alias that returns its input
                    return originals[id(x)]
                if target != "cuda":
                    return x
                wrapped = CudaTensor(x)
                self.memory.hold(wrapped)
                return wrapped
            if isinstance(x, (list, tuple)):
                return type(x)(wrap(item) for item in x)
            return x

        return wrap(out)

    @staticmethod
    def _target_device(func, kwargs, devices: set[str]) -> str:
        named = kwargs.get("device")
        if {"cuda", "cpu"} <= devices and func not in CROSS_DEVICE:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:0 and cpu! ({func}, emulated CUDA)")
        target = torch.device(named).type if named is not None else ("cuda" if "cuda" in devices else "cpu")
        generator = kwargs.get("generator")
        if generator is not None and generator.device.type != target:
            raise RuntimeError(f"Expected a '{target}' device type for generator but found "
                               f"'{generator.device.type}' ({func}, emulated CUDA)")
        return target


def _cuda_functions(memory: Memory) -> dict:
    """torch.cuda's Python functions for one visible device (a CPU-only build has no driver behind them)."""
    properties = types.SimpleNamespace(name="Emulated CUDA device", uuid="emulated-cuda-0", major=9, minor=0,
                                       total_memory=80 * 2**30, multi_processor_count=132)

    def of_the_device(answer):
        """A query about one device: refuses another index, as CUDA does, then answers."""
        def query(device=None):
            index = torch.device(device).index if isinstance(device, (str, torch.device)) else device
            if index not in (None, 0):
                raise RuntimeError("CUDA error: invalid device ordinal (emulated CUDA shows one device)")
            return answer()
        return query

    def reset_peak():
        memory.peak = memory.allocated

    return {
        "_lazy_init": lambda: None,
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: 0,
        "is_bf16_supported": lambda including_emulation=True: True,
        "set_device": of_the_device(lambda: None),
        "synchronize": of_the_device(lambda: None),
        "get_device_properties": of_the_device(lambda: properties),
        "get_device_name": of_the_device(lambda: properties.name),
        "get_device_capability": of_the_device(lambda: (properties.major, properties.minor)),
        "memory_allocated": of_the_device(lambda: memory.allocated),
        "max_memory_allocated": of_the_device(lambda: memory.peak),
        "reset_peak_memory_stats": of_the_device(reset_peak),
    }


@contextlib.contextmanager
def emulated_cuda():
    """Inside: cuda:0 is the emulated device (for a process whose torch was imported after the shim loaded)."""
    if torch.accelerator.current_accelerator() is None:
        raise RuntimeError("the emulated-CUDA shim was not loaded before torch was imported")
    memory = Memory()
    replaced = _cuda_functions(memory)
    saved = {name: getattr(torch.cuda, name) for name in replaced}
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    # module.to("cuda") would otherwise keep the Parameter objects and swap in the new tensors' internals,
    # dropping the CPU data that a CudaTensor carries
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    for name, function in replaced.items():
        setattr(torch.cuda, name, function)
    try:
        with CudaRules(memory):
            yield memory
    finally:
        for name, function in saved.items():
            setattr(torch.cuda, name, function)
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
