// veer_heap_in_use: the benchmarks' measure of what the agent keeps per service.
#include <malloc.h>
#include "CVeer.h"

size_t veer_heap_in_use(void) {
	struct mallinfo2 m = mallinfo2();
	// uordblks alone misses every chunk malloc served with mmap (hblkhd): any block past the
	// mmap threshold (128 KB, rising with frees up to 32 MB), e.g. a 1M-bucket hash table.
	return m.uordblks + m.hblkhd;
}

// veer_heap_release: hands the heap's free pages back to the kernel. glibc keeps what a large
// /metrics scrape freed (its dynamic mmap threshold rises to the size of the largest block
// freed, up to 32 MB, and it trims the heap only past twice that), so without this each scrape
// at 10,000 services left tens of megabytes resident.
void veer_heap_release(void) {
	malloc_trim(0);
}
