// Every layer of nabla.
#pragma once

#include <nabla/layers/activation.h>
#include <nabla/layers/conv.h>
#include <nabla/layers/dense.h>
#include <nabla/layers/init.h>
#include <nabla/layers/module.h>
#include <nabla/layers/norm.h>
#include <nabla/layers/pool.h>
#include <nabla/layers/progress.h>
#include <nabla/layers/sequential.h>
