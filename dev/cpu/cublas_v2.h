// the CPU build's stand-in for <cublas_v2.h>: dev/cuda_cpu.h emulates it
#include "../cuda_cpu.h"
