// libFuzzer target: whole safetensors files through load_safetensors. See fuzz_inputs.h.
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nabla_fuzz::run_safetensors(data, size);
  return 0;
}
