// Pinned, read-only git checkouts: a run that asks for {"repo": …, "sha": …} gets the tree of
// exactly that commit at /workspace (read-only, or as the lower layer of a copy-on-write
// workspace), checked for changes after the run and removed when the run ends:
//
//   Mirrors mirrors(state_dir + "/mirrors");
//   auto mirror = mirrors.Ensure(repo, sha);                  // mirrors.h
//   auto manifest = Materialize(*mirror, sha, tree_dir, ids);  // materialize.h
//   ... the run ...
//   auto status = CheckClean(tree_dir, *manifest);            // tree_status.h
//   RemoveTree(tree_dir);                                     // remove_tree.h
//
// Everything git goes through libgit2 inside this library (never the git binary); no libgit2
// header is included by these headers.
#pragma once

#include "supervisor/checkout/materialize.h"
#include "supervisor/checkout/mirrors.h"
#include "supervisor/checkout/remove_tree.h"
#include "supervisor/checkout/repo_location.h"
#include "supervisor/checkout/tree_status.h"
