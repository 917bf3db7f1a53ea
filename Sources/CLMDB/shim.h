#ifndef USAGE_LEDGER_CLMDB_SHIM_H
#define USAGE_LEDGER_CLMDB_SHIM_H
#include <lmdb.h>
#endif
