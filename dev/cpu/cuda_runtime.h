// the CPU build's stand-in for <cuda_runtime.h>: dev/cuda_cpu.h emulates it
#include "../cuda_cpu.h"
