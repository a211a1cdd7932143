// Dataset readers and loaders: IDX files, MNIST / Fashion-MNIST, Dataset, DataLoader.
#pragma once

#include <nabla/core/data/dataloader.h>
#include <nabla/core/data/dataset.h>
#include <nabla/core/data/idx.h>
