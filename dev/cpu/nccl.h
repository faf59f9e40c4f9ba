// the CPU build's stand-in for <nccl.h>: dev/cuda_cpu.h emulates it
#include "../cuda_cpu.h"
