// The row kernel for any CPU (at::vec's generic Vectorized).
#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#include "baseline_includes.h"
#include "post_conv_prep_cpu_rows.h"
