// Every header the row kernel pulls in apart from at::vec itself. The AVX2
// and AVX512 files include this before their `#pragma GCC target`, so the
// inline functions these headers define are compiled for the baseline ISA:
// otherwise the linker could keep an AVX512 copy of, say, the BFloat16
// conversion for the whole library, and the baseline path would crash on a
// CPU without AVX512. at::vec's own code sits in a namespace per ISA.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>

#include <ATen/NumericUtils.h>
#include <ATen/native/Math.h>
#include <ATen/native/cpu/zmath.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16-math.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/Load.h>
#include <c10/util/MathConstants.h>
#include <c10/util/TypeCast.h>
#include <c10/util/copysign.h>
#include <c10/util/irange.h>

#include "../post_conv_prep_math.h"
#include "post_conv_prep_cpu.h"
