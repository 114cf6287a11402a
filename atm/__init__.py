"""atm: pretrain, distil and fine-tune transformer encoders in JAX/Flax."""
import contextlib
import os
import sys

# TensorFlow (pulled in by seqio, tfds and clu) is only used on the host; keep its Python-side logging quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _skip_the_tpu_backend_without_tpu_chips():
    """With libtpu installed (the `tpu_aot` extra: compiling for TPU topologies on a CPU machine) jax tries a TPU
    backend at every start, and libtpu prints metadata-server warnings on a machine without TPU chips. There atm
    makes that backend fail quietly before it loads libtpu, as jax itself skips CUDA without an NVIDIA GPU; the
    platform stays registered (lowering rules name it). JAX_PLATFORMS or JAX_FORCE_TPU_INIT set by the user wins.
    Topology compiles (atm.aot) load libtpu on their own and are unaffected. Uses jax internals, so a change
    there only skips this."""
    if os.environ.get("JAX_PLATFORMS") or "JAX_FORCE_TPU_INIT" in os.environ:
        return
    try:
        import dataclasses

        from jax._src import hardware_utils, xla_bridge

        registration = xla_bridge._backend_factories.get("tpu")
        if registration is None or hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0:
            return

        def no_tpu_chips():
            raise RuntimeError("no TPU chips on this machine (atm skipped libtpu)")

        xla_bridge._backend_factories["tpu"] = dataclasses.replace(registration, factory=no_tpu_chips,
                                                                   fail_quietly=True)
    except (ImportError, AttributeError, TypeError, IndexError):
        pass


_skip_the_tpu_backend_without_tpu_chips()


@contextlib.contextmanager
def stderr_fd_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ libraries write there directly).

    `ATM_VERBOSE=1` leaves it alone, to see what a library says while loading."""
    if os.environ.get("ATM_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """`tensorflow`, imported without its start-up lines on the console.

    TensorFlow's shared libraries log through absl before `absl::InitializeLog()` (oneDNN's "custom operations
    are on", cudart_stub's "Could not find cuda drivers", one set per library), which TF_CPP_MIN_LOG_LEVEL does
    not reach; so the first import runs with stderr's descriptor silenced. An import error still raises here,
    with its message. Call it before anything that imports TensorFlow (seqio, clu, tfds).
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with stderr_fd_silenced():
        import tensorflow
    return tensorflow


def from_pretrained(path: str, **overrides):
    """An atm workdir or a Hugging Face directory → model, params and tokenizer (atm/convert/pretrained.py)."""
    from atm.convert.pretrained import from_pretrained as load

    return load(path, **overrides)
