// Every optimizer of nabla, with learning-rate schedules and gradient clipping.
#pragma once

#include <nabla/optim/clip.h>
#include <nabla/optim/optimizer.h>
#include <nabla/optim/schedule.h>
