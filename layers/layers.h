// Every layer of nabla: Module, the layers, losses, initializers and Sequential. The Keras-style
// Model API (compile / fit / evaluate / predict) is above them, in train/train.h.
#pragma once

#include <nabla/layers/activation.h>
#include <nabla/layers/conv.h>
#include <nabla/layers/dense.h>
#include <nabla/layers/embedding.h>
#include <nabla/layers/init.h>
#include <nabla/layers/loss.h>
#include <nabla/layers/module.h>
#include <nabla/layers/norm.h>
#include <nabla/layers/pool.h>
#include <nabla/layers/rnn.h>
#include <nabla/layers/sequential.h>
