// Every public op of nabla's core.
#pragma once

#include <nabla/core/autograd.h>
#include <nabla/core/config.h>
#include <nabla/core/ops/conv.h>
#include <nabla/core/ops/elementwise.h>
#include <nabla/core/ops/embedding.h>
#include <nabla/core/ops/foreach.h>
#include <nabla/core/ops/linalg.h>
#include <nabla/core/ops/loss.h>
#include <nabla/core/ops/norm.h>
#include <nabla/core/ops/pool.h>
#include <nabla/core/ops/reduce.h>
#include <nabla/core/ops/rnn.h>
#include <nabla/core/ops/shape.h>
#include <nabla/core/tensor.h>
