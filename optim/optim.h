// Every optimizer of nabla.
#pragma once

#include <nabla/optim/optimizer.h>
