// nabla: deep learning in C++ on CPUs and NVIDIA GPUs. This header brings in the whole
// public API: tensors, ops and autograd (core), devices, errors and logging, safetensors
// checkpoints, datasets, layers, optimizers, and the Keras-style training API (train/).
#pragma once

#include <nabla/core/anomaly.h>
#include <nabla/core/autograd.h>
#include <nabla/core/data.h>
#include <nabla/core/device.h>
#include <nabla/core/error.h>
#include <nabla/core/io/safetensors.h>
#include <nabla/core/log.h>
#include <nabla/core/ops.h>
#include <nabla/core/tensor.h>
#include <nabla/dist/ddp.h>
#include <nabla/dist/dist.h>
#include <nabla/layers/layers.h>
#include <nabla/optim/optim.h>
#include <nabla/train/train.h>
#include <nabla/version.h>
