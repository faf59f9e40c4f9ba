// the CPU build's stand-in for <cublasLt.h>: dev/cuda_cpu.h emulates it
#include "../cuda_cpu.h"
