"""The C glue itself: conversions, errors, copies, reference counts, memory."""
import os
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import dasecv
from dasecv.course import layers


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- dtypes and conversions ------------------------------------------------

def test_call_dtype_follows_x():
    x32 = f32(2, 3)
    assert dasecv.op_forward('relu', x32).dtype == np.float32
    assert dasecv.op_forward('relu', x32.astype(np.float64)).dtype == np.float64
    assert dasecv.op_forward('relu', x32.astype(np.float16)).dtype == np.float32
    out = dasecv.op_forward('relu', np.array([[-2, 3]], dtype=np.int64))
    assert out.dtype == np.float64 and out.tolist() == [[0.0, 3.0]]
    assert dasecv.op_forward('relu', [[-1.5, 2.5]]).tolist() == [[0.0, 2.5]]


def test_exact_conversions_only():
    x = f32(2, 3)
    w64 = np.ones((3, 2))
    with pytest.raises(TypeError, match='w is float64'):
        dasecv.op_forward('affine', x, w64, np.zeros(2, np.float32))
    # float32 into a float64 call and small integers are exact
    out = dasecv.op_forward('affine', x.astype(np.float64), w64.astype(np.float32),
                            np.zeros(2, np.int32))
    np.testing.assert_allclose(out, x.astype(np.float64) @ w64)
    out = dasecv.op_forward('affine', x, np.ones((3, 2), np.int32), np.zeros(2, np.int64))
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match='too large'):
        dasecv.op_forward('affine', x, np.full((3, 2), 2**24 + 1, np.int32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match='too large'):
        dasecv.op_forward('relu', np.array([2**53 + 1], dtype=np.int64))
    with pytest.raises(TypeError):
        dasecv.op_forward('relu', np.ones(3, np.complex128))
    with pytest.raises(TypeError):
        dasecv.op_forward('relu', np.array([object()], dtype=object))
    with pytest.raises(TypeError):
        dasecv.op_forward('affine', x, [[0.1, 0.2]] * 3, np.zeros(2, np.float32))


def test_labels():
    x = f32(3, 4)
    for dt in (np.int8, np.uint16, np.int32, np.int64, np.uint64):
        loss, dx = layers.softmax_loss(x, np.array([0, 3, 1], dtype=dt))
        assert np.isfinite(loss) and dx.shape == x.shape
    with pytest.raises(TypeError, match='integers'):
        layers.softmax_loss(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match='does not fit in int32'):
        layers.softmax_loss(x, np.array([0, 2**40, 1]))
    with pytest.raises(ValueError, match='does not fit in int32'):
        layers.svm_loss(x, np.array([0, 2**63, 1], dtype=np.uint64))
    with pytest.raises(ValueError, match=r'outside \[0, 4\)'):
        layers.svm_loss(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match='2 labels for 3 rows'):
        layers.svm_loss(x, np.array([0, 1]))
    with pytest.raises(TypeError, match='not None'):
        layers.svm_loss(x, None)


# ---- bad input gives exceptions with the engine's messages ------------------

def test_shapes_and_ranks():
    x, w, b = f32(2, 3, 8, 8), f32(4, 2, 3, 3), f32(4)
    cp = {'stride': 1, 'pad': 1}
    with pytest.raises(ValueError, match='conv: x has 3 channels but w expects 2'):
        layers.conv_forward_naive(x, w, b, cp)
    with pytest.raises(ValueError, match=r'conv: x must be \(N, C, H, W\)'):
        layers.conv_forward_naive(f32(3, 8, 8), f32(4, 3, 3, 3), b, cp)
    with pytest.raises(ValueError, match='5 dimensions'):
        dasecv.op_forward('conv', f32(1, 2, 3, 8, 8), f32(4, 3, 3, 3), b)
    with pytest.raises(ValueError, match='0 dimensions'):
        dasecv.op_forward('relu', np.float32(1.0))
    with pytest.raises(ValueError, match='empty dimension'):
        dasecv.op_forward('relu', np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match='b has shape'):
        layers.conv_forward_naive(f32(2, 2, 8, 8), w, f32(3), cp)
    with pytest.raises(ValueError, match='affine: x has 6 features per row but w has 5 rows'):
        layers.affine_forward(f32(2, 6), f32(5, 3), f32(3))
    out, cache = layers.conv_forward_naive(f32(2, 2, 8, 8), w, b, cp)
    with pytest.raises(ValueError, match='dout has shape'):
        layers.conv_backward_naive(f32(2, 4, 7, 8), cache)


def test_none_where_an_array_is_needed():
    with pytest.raises(TypeError, match='x must be an array, not None'):
        dasecv.op_forward('relu', None)
    with pytest.raises(TypeError, match='dout must be an array, not None'):
        dasecv.op_backward('relu', None, f32(2, 2))
    with pytest.raises(ValueError, match='conv: missing w'):
        dasecv.op_forward('conv', f32(1, 1, 3, 3), None, f32(1))
    with pytest.raises(ValueError, match='gamma'):
        layers.layernorm_forward(f32(2, 3), None, f32(3), {})


def test_bad_names_and_params():
    x = f32(2, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        dasecv.op_forward('relu', x, backend='gpu')
    with pytest.raises(ValueError, match="unknown op 'sigmoid'"):
        dasecv.op_forward('sigmoid', x)
    with pytest.raises(ValueError, match="unknown backend"):
        dasecv.backend_available('tpu')
    w, b = f32(4, 3, 3, 3), f32(4)
    with pytest.raises(ValueError, match='stride must be >= 1'):
        layers.conv_forward_naive(x, w, b, {'stride': 0, 'pad': 1})
    with pytest.raises(ValueError, match='pad >= 0'):
        layers.conv_forward_naive(x, w, b, {'stride': 1, 'pad': -1})
    with pytest.raises(ValueError, match='not divisible by stride'):
        layers.conv_forward_naive(x, w, b, {'stride': 2, 'pad': 0})
    with pytest.raises(KeyError):
        layers.conv_forward_naive(x, w, b, {'stride': 1})
    with pytest.raises(ValueError, match='larger than'):
        layers.max_pool_forward_naive(x, {'pool_height': 9, 'pool_width': 2, 'stride': 1})
    with pytest.raises(ValueError, match='must be >= 1'):
        layers.max_pool_forward_naive(x, {'pool_height': 0, 'pool_width': 2, 'stride': 1})
    for p in (0.0, 1.5, -1.0, float('nan')):
        with pytest.raises(ValueError, match='keep probability p'):
            layers.dropout_forward(x, {'mode': 'train', 'p': p})
    with pytest.raises(ValueError, match="mode must be 'train' or 'test'"):
        layers.dropout_forward(x, {'mode': 'eval', 'p': 0.5})
    g, bt = f32(3), f32(3)
    with pytest.raises(ValueError, match='eps must be positive'):
        layers.spatial_batchnorm_forward(x, g, bt, {'mode': 'train', 'eps': 0})
    with pytest.raises(ValueError, match='momentum'):
        layers.spatial_batchnorm_forward(x, g, bt, {'mode': 'train', 'momentum': 2})
    with pytest.raises(ValueError, match='not divisible by groups'):
        layers.spatial_groupnorm_forward(x, g, bt, 2, {})
    with pytest.raises(TypeError):
        dasecv.op_forward('conv', x, w, b, strides=2)
    with pytest.raises(TypeError):
        dasecv.op_forward('conv', x, w, b, stride='2')
    with pytest.raises(OverflowError):
        dasecv.op_forward('conv', x, w, b, stride=2**40)


def test_running_statistics():
    x = f32(6, 3)
    g, bt = np.ones(3, np.float32), np.zeros(3, np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    dasecv.op_forward('batchnorm', x, g, bt, running_mean=rm, running_var=rv, momentum=0.5)
    np.testing.assert_allclose(rm, 0.5 * x.mean(0), rtol=1e-5)
    with pytest.raises(TypeError, match='running_mean is float64'):
        dasecv.op_forward('batchnorm', x, g, bt, running_mean=np.zeros(3), running_var=rv)
    with pytest.raises(ValueError, match='C-contiguous'):
        dasecv.op_forward('batchnorm', x, g, bt, running_mean=np.zeros(6, np.float32)[::2],
                          running_var=rv)
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match='writeable'):
        dasecv.op_forward('batchnorm', x, g, bt, running_mean=ro, running_var=rv)
    with pytest.raises(TypeError, match='must be a numpy array'):
        dasecv.op_forward('batchnorm', x, g, bt, running_mean=[0, 0, 0], running_var=rv)
    with pytest.raises(ValueError, match='test mode needs running_mean'):
        dasecv.op_forward('batchnorm', x, g, bt, train=False)
    # the course's dicts: float32 statistics convert exactly for a float64 x
    bn = {'mode': 'train', 'running_mean': np.zeros(3, np.float32)}
    layers.batchnorm_forward(x.astype(np.float64), g, bt, bn)
    assert bn['running_mean'].dtype == np.float64
    bn = {'mode': 'train', 'running_mean': np.zeros(3)}
    with pytest.raises(TypeError, match='does not convert exactly'):
        layers.batchnorm_forward(x, g, bt, bn)


def test_non_contiguous_inputs():
    x = f32(4, 3, 10, 10)
    w = f32(5, 3, 3, 3)
    xs, ws = x[:, :, ::2, ::2], np.asfortranarray(w)
    b = f32(10)[::2]
    cp = {'stride': 1, 'pad': 1}
    out, _ = layers.conv_forward_naive(xs, ws, b, cp)
    want, _ = layers.conv_forward_naive(np.ascontiguousarray(xs), w, b.copy(), cp)
    np.testing.assert_array_equal(out, want)
    big = np.zeros(1 << 10, np.uint8)
    unaligned = np.frombuffer(big.data, dtype=np.float32, count=8, offset=1).reshape(2, 4)
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(dasecv.op_forward('relu', unaligned), np.maximum(unaligned, 0))


def test_threads():
    n = dasecv.get_num_threads()
    try:
        dasecv.set_num_threads(1)
        assert dasecv.get_num_threads() == 1
        x = f32(2, 3, 8, 8)
        one = dasecv.op_forward('conv', x, f32(4, 3, 3, 3), f32(4), pad=1)
        dasecv.set_num_threads(2)
        assert dasecv.get_num_threads() == 2
        two = dasecv.op_forward('conv', x, f32(4, 3, 3, 3), f32(4), pad=1)
        np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match='thread count'):
            dasecv.set_num_threads(0)
        with pytest.raises(TypeError):
            dasecv.set_num_threads('2')
    finally:
        dasecv.set_num_threads(n)


def test_python_threads_share_the_engine():
    """Calls from several Python threads at once (the GIL is released while
    each runs) give the results of calls made one at a time."""
    x, w, b = f32(8, 3, 16, 16), f32(8, 3, 3, 3), f32(8)
    want = dasecv.op_forward('conv', x, w, b, pad=1)
    got, errors = [], []

    def work():
        try:
            for _ in range(20):
                got.append(dasecv.op_forward('conv', x, w, b, pad=1))
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 60
    for g in got:
        np.testing.assert_array_equal(g, want)


# ---- no copies, balanced references, flat memory ------------------------------

def peak_bytes(fn):
    """Peak of numpy's traced allocations while fn runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, result


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_contiguous_inputs_are_not_copied(dtype):
    x = np.random.default_rng(1).standard_normal((256, 1024)).astype(dtype)
    dout = np.ones_like(x)
    nbytes = x.nbytes
    peak, out = peak_bytes(lambda: dasecv.op_forward('relu', x))
    assert nbytes <= peak < 1.25 * nbytes, peak     # the output only
    peak, dx = peak_bytes(lambda: dasecv.op_backward('relu', dout, x))
    assert nbytes <= peak < 1.25 * nbytes, peak
    # the check sees copies: a strided view is copied once (the control)
    wide = np.repeat(x, 2, axis=1)[:, ::2]
    assert not wide.flags.c_contiguous
    peak, _ = peak_bytes(lambda: dasecv.op_forward('relu', wide))
    assert peak >= 2 * nbytes, peak


def test_references_balanced():
    x, w, b = f32(2, 3, 6, 6), f32(4, 3, 3, 3), f32(4)
    y = np.array([0, 1], dtype=np.int64)
    s = f32(2, 3)
    before = [sys.getrefcount(a) for a in (x, w, b, y, s)]
    for _ in range(1000):
        out = dasecv.op_forward('conv', x, w, b, pad=1)
        dasecv.op_backward('conv', out, x, w, b, pad=1)
        dasecv.op_forward('softmax_loss', s, y=y)
        with pytest.raises(ValueError):
            dasecv.op_forward('conv', x, w, b, stride=4)
        with pytest.raises(TypeError):
            dasecv.op_forward('conv', x, w.astype(np.float64), b)
    del out
    assert [sys.getrefcount(a) for a in (x, w, b, y, s)] == before
    assert sys.getrefcount(out_probe()) == 2  # a fresh result holds one reference


def out_probe():
    return dasecv.op_forward('relu', f32(2, 2))


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096


def test_rss_flat_over_many_small_calls():
    """10^5 small calls (fresh inputs each time, errors among them) leave the
    resident size where it was, within a small slack."""
    if 'libasan' in os.environ.get('LD_PRELOAD', ''):
        pytest.skip("AddressSanitizer's quarantine keeps freed memory resident")
    rng = np.random.default_rng(3)
    pool = [rng.standard_normal((2, 2)).astype(np.float32) for _ in range(16)]
    y = np.array([0, 1])

    def burst(n):
        for i in range(n):
            x = pool[i % 16].copy()
            out = dasecv.op_forward('relu', x)
            if i % 4 == 0:
                dasecv.op_backward('relu', out, x)
            elif i % 4 == 1:
                dasecv.op_forward('softmax_loss', x, y=y)
            elif i % 4 == 2:
                try:
                    dasecv.op_forward('relu', x, backend='bogus')
                except ValueError:
                    pass
            else:
                try:
                    dasecv.op_forward('affine', x, x.astype(np.float64), x[0])
                except TypeError:
                    pass
    burst(5000)  # warm-up: allocator pools, exception machinery
    before = rss_bytes()
    burst(100_000)
    grown = rss_bytes() - before
    assert grown < 1 << 20, "resident size grew by %d bytes" % grown
