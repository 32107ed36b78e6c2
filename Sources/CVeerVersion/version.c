/* SwiftPM cannot pass string defines, so the Makefile writes veer_version.h (gitignored)
 * next to this file; a plain `swift build` without it still builds, as "dev"/"unknown".
 * Only this file includes it, so a new revision recompiles one C file and relinks. */
#include "CVeerVersion.h"

#if __has_include("veer_version.h")
#include "veer_version.h"
#endif
#ifndef VEER_VERSION
#define VEER_VERSION "dev"
#endif
#ifndef VEER_GIT_REVISION
#define VEER_GIT_REVISION "unknown"
#endif

const char *veer_version(void) { return VEER_VERSION; }
const char *veer_git_revision(void) { return VEER_GIT_REVISION; }
