// Op 2's CPU row kernel, written once against the vector layer (vec.h) and
// included by each per-ISA file after post_conv_prep_rows.h, whose op 1
// row code it runs on the conv's output. One copy per ISA in
// gdn::cpu::<ISA>.
//
// Tokens are taken in blocks of rows small enough to stay in the core's
// cache: the conv writes a block's rows (rounded to x's dtype, the values an
// unfused layer would store) into a buffer, and op 1's row kernel turns them
// into q, k, v, g and beta. Only the buffer, never the whole conv output,
// exists in memory.

namespace gdn::cpu {
namespace CPU_CAPABILITY {
namespace {

// Where the taps of one token come from. Tap j of token t reads position
// t - (W-1) + j of its sequence: x's row there, or, before the sequence's
// start, a column of its cache line (or zeros without one).
struct TapRow {
  const void* data;  // null: zeros
  int64_t stride;    // between features
};

// The sequence holding token t: the last i in [0, B) with qsl[i] <= t.
struct SequenceCursor {
  const CausalConvPrepParams& p;
  int64_t i = 0;

  int64_t bound(int64_t j) const {
    return p.query_start_loc[j * p.query_start_loc_stride];
  }

  void seek(int64_t t) {
    int64_t lo = 0, hi = p.B;  // bound(lo) <= t < bound(hi), where the bounds are sorted
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (bound(mid) <= t ? lo : hi) = mid;
    }
    i = lo;
  }

  void advance_to(int64_t t) {
    while (i + 1 < p.B && bound(i + 1) <= t) ++i;
  }
};

// The W tap rows of token t of the sequence the cursor holds. Bounds that
// are not what SPEC asks for are clamped, so that nothing is read out of
// range whatever they hold.
template <typename T>
void tap_rows(const CausalConvPrepParams& p, const SequenceCursor& seq, int64_t t,
              TapRow* taps) {
  const int64_t start = std::min<int64_t>(std::max<int64_t>(seq.bound(seq.i), 0), t);
  const T* prior = nullptr;
  if (t - start < p.W - 1) {
    const int64_t line = p.cache_indices ? p.cache_indices[seq.i * p.cache_indices_stride] : seq.i;
    const bool initial = p.has_initial_state &&
                         p.has_initial_state[seq.i * p.has_initial_state_stride];
    if (initial && line != p.pad_slot_id && line >= 0 && line < p.N) {
      prior = static_cast<const T*>(p.states) + line * p.states_stride_line;
    }
  }
  for (int64_t j = 0; j < p.W; ++j) {
    const int64_t pos = t - (p.W - 1) + j;
    if (pos >= start) {
      taps[j] = {static_cast<const T*>(p.x) + pos * p.x_stride_row, p.x_stride_feat};
    } else if (prior != nullptr) {
      taps[j] = {prior + (pos - start + p.W - 1) * p.states_stride_tap, p.states_stride_feat};
    } else {
      taps[j] = {nullptr, 0};
    }
  }
}

// Lanes [0, n) of a tap from feature d on, as float: loaded in place where the
// tap has unit feature stride (x's rows, cache lines laid out [N, W-1, D]),
// else gathered first.
template <typename T>
inline FloatVec tap_lanes(const TapRow& tap, int64_t d, int64_t n) {
  const T* src = static_cast<const T*>(tap.data);
  if (tap.stride == 1) return n == kLanes ? load(src + d) : load(src + d, n);
  T lanes[kLanes];
  for (int64_t i = 0; i < n; ++i) lanes[i] = src[(d + i) * tap.stride];
  return load(static_cast<const T*>(lanes), n);
}

// y[d] = act(bias[d] + sum_j w[j][d] * tap_j[d]), accumulated in float32 from
// the first tap to the last and rounded once to T. Every token takes this one
// vector path whatever its taps' strides, so a token reads the same bits
// whether its prior inputs come from x or from a cache line (a sequence split
// over calls gives the bits of one call).
template <typename T>
__attribute__((flatten)) void conv_row(const CausalConvPrepParams& p, const ConvTables& tables,
                                       const TapRow* taps, T* y) {
  const int64_t D = p.D, W = p.W;
  for (int64_t d = 0; d < D; d += kLanes) {
    const int64_t n = std::min<int64_t>(kLanes, D - d);
    const bool full = n == kLanes;
    FloatVec acc = full ? load(tables.bias + d) : load(tables.bias + d, n);
    for (int64_t j = 0; j < W; ++j) {
      if (taps[j].data == nullptr) continue;
      const float* w = tables.weight + j * D + d;
      acc = acc + (full ? load(w) : load(w, n)) * tap_lanes<T>(taps[j], d, n);
    }
    if (p.silu) acc = silu(acc);
    if (full) {
      store<false>(y + d, acc);
    } else {
      store(y + d, acc, n);
    }
  }
}

// Op 1's parameters for rows [r0, r0 + n) of y held in `rows` (row-major).
PostConvPrepParams block_params(const PostConvPrepParams& p, const void* rows, int64_t D,
                                int64_t r0, int64_t n) {
  const auto shifted = [&](StridedInput in) {
    in.data = static_cast<const char*>(in.data) + r0 * in.stride0 * element_bytes(in.kind);
    return in;
  };
  PostConvPrepParams block = p;
  const int64_t y_bytes = element_bytes(p.conv_kind);
  block.L = n;
  block.conv = rows;
  block.conv_stride_row = D;
  block.conv_stride_feat = 1;
  block.a = shifted(p.a);
  block.b = shifted(p.b);
  block.q = static_cast<char*>(p.q) + r0 * p.H * p.K * y_bytes;
  block.k = static_cast<char*>(p.k) + r0 * p.H * p.K * y_bytes;
  block.v = static_cast<char*>(p.v) + r0 * p.HV * p.V * y_bytes;
  block.g = p.g + r0 * p.HV;
  block.beta = p.beta + r0 * p.HV;
  return block;
}

template <typename T>
void causal_conv_rows(const CausalConvPrepParams& p, const ConvTables& tables, int64_t begin,
                      int64_t end, bool stream_stores) {
  // About 64 KiB of conv output per block: it stays in L2 between the conv
  // writing it and op 1 reading it.
  const int64_t block_rows =
      std::max<int64_t>(1, (int64_t{1} << 16) / (p.D * static_cast<int64_t>(sizeof(T))));
  auto y = std::make_unique<T[]>(std::min(block_rows, end - begin) * p.D);
  SequenceCursor seq{p};
  seq.seek(begin);
  TapRow taps[4];
  for (int64_t r0 = begin; r0 < end; r0 += block_rows) {
    const int64_t n = std::min(block_rows, end - r0);
    for (int64_t j = 0; j < n; ++j) {
      seq.advance_to(r0 + j);
      tap_rows<T>(p, seq, r0 + j, taps);
      conv_row<T>(p, tables, taps, y.get() + j * p.D);
    }
    rows<T>(block_params(p.prep, y.get(), p.D, r0, n), 0, n, stream_stores);
  }
}

}  // namespace

void causal_conv_prep_rows(const CausalConvPrepParams& p, const ConvTables& tables, int64_t begin,
                           int64_t end, bool stream_stores) {
  dispatch_activation(p.prep.conv_kind, [&](auto zero) {
    causal_conv_rows<decltype(zero)>(p, tables, begin, end, stream_stores);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace gdn::cpu
