#ifndef CVEER_VERSION_H
#define CVEER_VERSION_H

/* The version and git revision veerd and veerctl were built from (`--version`). */
const char *veer_version(void);
const char *veer_git_revision(void);

#endif
