// nabla::version() and nabla::build_info(). CMake defines the NABLA_BUILD_* strings on this file
// alone (CMakeLists.txt): the CUDA toolkit, cuDNN and oneDNN versions found when configuring.
#include <nabla/version.h>

namespace nabla {

const char* version() { return NABLA_VERSION_STRING; }

BuildInfo build_info() {
  BuildInfo b;
  b.version = version();
#ifdef NABLA_WITH_CUDA
  b.cuda = true;
#endif
  b.cuda_version = NABLA_BUILD_CUDA_VERSION;
  b.cudnn_version = NABLA_BUILD_CUDNN_VERSION;
  b.onednn_version = NABLA_BUILD_DNNL_VERSION;
  b.onednn = !b.onednn_version.empty();
  b.blas = NABLA_BUILD_BLAS;
  return b;
}

}  // namespace nabla
