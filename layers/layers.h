// Every layer of nabla, and the Keras-style Model API (compile / fit / evaluate / predict).
#pragma once

#include <nabla/layers/activation.h>
#include <nabla/layers/callbacks.h>
#include <nabla/layers/conv.h>
#include <nabla/layers/dense.h>
#include <nabla/layers/embedding.h>
#include <nabla/layers/history.h>
#include <nabla/layers/init.h>
#include <nabla/layers/loss.h>
#include <nabla/layers/metrics.h>
#include <nabla/layers/model.h>
#include <nabla/layers/module.h>
#include <nabla/layers/norm.h>
#include <nabla/layers/pool.h>
#include <nabla/layers/progress.h>
#include <nabla/layers/regularizer.h>
#include <nabla/layers/rnn.h>
#include <nabla/layers/sequential.h>
