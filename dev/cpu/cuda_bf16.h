// the CPU build's stand-in for <cuda_bf16.h>: dev/cuda_cpu.h emulates it
#include "../cuda_cpu.h"
