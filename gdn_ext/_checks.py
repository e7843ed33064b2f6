"""Argument checks for the Python-side implementations (fake, Triton,
reference). They mirror csrc/post_conv_prep.cpp's checks message for message;
tests/test_errors.py runs every bad input through every backend to keep the
two in step."""
import torch

OP = "gdn::fused_post_conv_prep: "
ACTIVATION_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_DTYPE_NAMES = "bfloat16, float16 or float32"


def _fail(msg):
    raise ValueError(OP + msg)


def check_args(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim):
    """Validates the op's arguments (SPEC.md "Bad input"); returns (L, HV)."""
    for name, value in (("num_k_heads", num_k_heads), ("head_k_dim", head_k_dim),
                        ("head_v_dim", head_v_dim)):
        if value <= 0:
            _fail(f"{name} must be >= 1, but got {value}")
    for name, t, dim, shape in (("conv_output", conv_output, 2, "[L, 2*H*K + HV*V]"),
                                ("a", a, 2, "[L, HV]"), ("b", b, 2, "[L, HV]"),
                                ("A_log", A_log, 1, "[HV]"), ("dt_bias", dt_bias, 1, "[HV]")):
        if t.dim() != dim:
            _fail(f"{name} must be a {dim}-D tensor {shape}, but got a {t.dim()}-D tensor "
                  f"of shape {list(t.shape)}")
    for name, t in (("conv_output", conv_output), ("a", a), ("b", b), ("A_log", A_log),
                    ("dt_bias", dt_bias)):
        if t.dtype not in ACTIVATION_DTYPES:
            _fail(f"{name} must have dtype {_DTYPE_NAMES}, but got {t.dtype}")
    for name, t in (("a", a), ("b", b), ("A_log", A_log), ("dt_bias", dt_bias)):
        if t.device != conv_output.device:
            _fail(f"all tensors must be on one device: conv_output is on {conv_output.device} "
                  f"but {name} is on {t.device}")
    L = conv_output.shape[0]
    HV = A_log.shape[0]
    check_feature_width(_fail, conv_output, "conv_output", A_log, num_k_heads, head_k_dim,
                        head_v_dim)
    check_gate_shapes(_fail, a, b, dt_bias, L, "L", HV)
    return L, HV


def check_feature_width(fail, x, name, A_log, H, K, V):
    """HV = A_log.size(0) >= 1 and x.size(1) == 2*H*K + HV*V (both ops);
    returns that width. fail(msg) raises with the op's prefix."""
    HV = A_log.shape[0]
    if HV < 1:
        fail(f"A_log must have HV >= 1 elements (one per value head), but got shape "
             f"{list(A_log.shape)}")
    width = 2 * H * K + HV * V
    if x.shape[1] != width:
        fail(f"{name}.size(1) must be 2*H*K + HV*V = 2*{H}*{K} + {HV}*{V} for num_k_heads={H}, "
             f"head_k_dim={K}, head_v_dim={V} and HV=A_log.size(0)={HV}, but got {x.shape[1]}")
    return width


def check_gate_shapes(fail, a, b, dt_bias, rows, rows_name, HV):
    """a and b [rows, HV], dt_bias [HV] (both ops)."""
    for name, t in (("a", a), ("b", b)):
        if tuple(t.shape) != (rows, HV):
            fail(f"{name} must have shape [{rows_name}, HV] = [{rows}, {HV}], but got "
                 f"{list(t.shape)}")
    if tuple(dt_bias.shape) != (HV,):
        fail(f"dt_bias must have shape [HV] = [{HV}], but got {list(dt_bias.shape)}")


OUTPUT_NAMES = ("q", "k", "v", "g", "beta")


def output_layout(conv_output, L, H, HV, K, V):
    """(name, shape, dtype) of the op's five outputs, as SPEC.md lays them out."""
    act, f32 = conv_output.dtype, torch.float32
    return tuple(zip(OUTPUT_NAMES, ((L, H, K), (L, H, K), (L, HV, V), (L, HV), (L, HV)),
                     (act, act, act, f32, f32)))


def empty_outputs(conv_output, L, H, HV, K, V):
    """The op's five outputs, uninitialised and contiguous."""
    return tuple(conv_output.new_empty(shape, dtype=dtype)
                 for _, shape, dtype in output_layout(conv_output, L, H, HV, K, V))


def check_outputs(conv_output, A_log, H, K, V, out, op=OP, input_name="conv_output"):
    """Validates the .out variant's five tensors (shape, dtype, device; any
    strides). Run after the argument checks, as the C++ checks run them.
    conv_output is the op's activation input (x for op 2), named input_name
    in the messages of op `op`."""
    L, HV = conv_output.shape[0], A_log.shape[0]
    for t, (name, shape, dtype) in zip(out, output_layout(conv_output, L, H, HV, K, V)):
        if tuple(t.shape) != shape:
            raise ValueError(f"{op}out {name} must have shape {list(shape)}, but got "
                             f"{list(t.shape)}")
        if t.dtype != dtype:
            raise ValueError(f"{op}out {name} must have dtype {dtype}, but got {t.dtype}")
        if t.device != conv_output.device:
            raise ValueError(f"{op}out {name} must be on {input_name}'s device "
                             f"{conv_output.device}, but is on {t.device}")
