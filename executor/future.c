/* placeholder replaced below */
#include <weft/future.h>
