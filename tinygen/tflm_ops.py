"""The builtin ops TensorFlow Lite Micro registers (data for the coverage column of SUPPORTED_OPS.md).

Source: the ``BuiltinOperator_*`` codes named by ``MicroMutableOpResolver``'s ``Add*`` methods in
tensorflow/tflite-micro, file tensorflow/lite/micro/micro_mutable_op_resolver.h, commit
90b983c2b3f1480642e040bbd2ddb37b998f3424 (2026-08-20); custom ops (CIRCULAR_BUFFER, the Signal
library, TFLite_Detection_PostProcess, ETHOSU, TFLM_DECODE) are left out. Only the op names are
kept here (no code). :data:`NOT_INT8` marks the ones that are not int8 tensor arithmetic in TFLM
(control flow, resource variables, shape/int32/bool/float-only ops): they are listed for
completeness but do not count against int8 coverage.
"""

SOURCE = ("tensorflow/tflite-micro tensorflow/lite/micro/micro_mutable_op_resolver.h "
          "@ 90b983c2b3f1480642e040bbd2ddb37b998f3424")

TFLM_OPS = (
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D", "BATCH_MATMUL",
    "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE", "CAST", "CEIL", "CONCATENATION", "CONV_2D",
    "COS", "CUMSUM", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU",
    "EMBEDDING_LOOKUP", "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED",
    "GATHER", "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "IF", "L2_NORMALIZATION", "L2_POOL_2D",
    "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC", "LOG_SOFTMAX",
    "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2",
    "PRELU", "QUANTIZE", "READ_VARIABLE", "REDUCE_ALL", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "ROUND", "RSQRT", "SELECT_V2", "SHAPE", "SIN",
    "SLICE", "SOFTMAX", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK", "VAR_HANDLE", "WHILE", "ZEROS_LIKE",
)

NOT_INT8 = frozenset({
    "ASSIGN_VARIABLE", "READ_VARIABLE", "VAR_HANDLE", "CALL_ONCE", "IF", "WHILE",  # control flow, resource variables
    "BROADCAST_ARGS", "SHAPE", "FILL", "CAST",  # shapes and type conversion
    "EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL",  # bool outputs
    "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "REDUCE_ALL",  # bool
    "CEIL", "FLOOR", "ROUND", "COS", "SIN", "FLOOR_DIV", "FLOOR_MOD",  # float / int32 only
})
