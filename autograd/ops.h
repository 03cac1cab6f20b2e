// Every differentiable op, for code that builds models (layers/, trainer/).
#pragma once

#include "autograd/ops_attention.h"
#include "autograd/ops_elementwise.h"
#include "autograd/ops_matmul.h"
#include "autograd/ops_nn.h"
#include "autograd/ops_shape.h"
#include "autograd/ops_ssd.h"
#include "autograd/ops_superlinear.h"
#include "autograd/variable.h"
