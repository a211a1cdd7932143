// Shared by the image examples: a shifted and mirrored copy of a batch of images, the
// augmentation they train with (Fashion-MNIST's clothing is left-right symmetric).
#pragma once

#include <nabla/nabla.h>

#include <random>
#include <vector>

namespace examples {

// A copy of the images (float32 [N, 1, 28, 28] on the CPU), each shifted by a random (dy, dx) in
// [-2, 2]^2 (zeros shifted in) and mirrored left-right with probability 1/2.
inline nabla::Tensor shift_and_mirror(const nabla::Tensor& x, std::mt19937_64& gen) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const std::vector<float> src = x.to_vector<float>();
  std::vector<float> dst(src.size(), 0.0f);
  std::uniform_int_distribution<int> shift(-2, 2), coin(0, 1);
  for (int64_t i = 0; i < n; ++i) {
    const int dy = shift(gen), dx = shift(gen);
    const bool flip = coin(gen) == 1;
    const float* s = src.data() + i * h * w;
    float* d = dst.data() + i * h * w;
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y - dy;
      if (sy < 0 || sy >= h) continue;
      for (int64_t xx = 0; xx < w; ++xx) {
        const int64_t sx = (flip ? w - 1 - xx : xx) - dx;
        if (sx >= 0 && sx < w) d[y * w + xx] = s[sy * w + sx];
      }
    }
  }
  return nabla::from_vector(dst, x.shape());
}

}  // namespace examples
