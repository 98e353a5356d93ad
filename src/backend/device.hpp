// Device discovery shared by every layer: which CUDA devices this process can
// use. Built with CUDA, it asks the CUDA runtime (statically linked, so the
// library loads on machines with no driver); built without, it says so.
#pragma once
#include <string>

namespace tppp {

bool cuda_built();
// Number of visible CUDA devices; 0 with *why filled when none can be used.
int cuda_device_count(std::string* why);
// Throws NOT_SUPPORTED (naming the reason) unless `ordinal` can be used.
void check_cuda_device(int ordinal);

}  // namespace tppp
