// The Keras-style training API, above layers/ and optim/: Model (compile / fit / evaluate /
// predict / summary), metrics, callbacks, the training history, the progress bar, regularizers.
#pragma once

#include <nabla/train/callbacks.h>
#include <nabla/train/history.h>
#include <nabla/train/metrics.h>
#include <nabla/train/model.h>
#include <nabla/train/progress.h>
#include <nabla/train/regularizer.h>
