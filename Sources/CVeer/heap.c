// veer_heap_in_use: the benchmarks' measure of what the agent keeps per service.
#include <malloc.h>
#include "CVeer.h"

size_t veer_heap_in_use(void) {
	return mallinfo2().uordblks;
}
