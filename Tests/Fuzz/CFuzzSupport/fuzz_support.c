// The declarations in include/fuzz_support.h are all this module has.
#include "fuzz_support.h"
