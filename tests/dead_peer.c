/* For tests/test_launcher.sh and tests/test_multihost.sh: 2 ranks; rank 1
 * dies by SIGKILL once the group is up, rank 0 is in a receive from it and
 * must get TPPP_ERR_REMOTE naming rank 1, print it and exit 3 on its own,
 * which tppp-run's grace period leaves it time to do. `dead_peer stuck`:
 * rank 1 stays alive but never sends (it sleeps 5 s); rank 0's receive must
 * end at the group's 1.5 s timeout with TPPP_ERR_TIMEOUT naming rank 1 and
 * its host (exit 3). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "c_api.h"

int main(int argc, char** argv) {
  const int stuck = argc > 1 && strcmp(argv[1], "stuck") == 0;
  tppp_group_params p;
  tppp_group_params_init(&p, sizeof p);
  p.timeout_ms = stuck ? 1500 : 20000;
  tppp_group_t g = NULL;
  if (tppp_group_create_from_env(&p, &g) != TPPP_OK) {
    fprintf(stderr, "group: %s\n", tppp_last_error());
    return 1;
  }
  tppp_group_info info;
  info.struct_size = sizeof info;
  tppp_group_get_info(g, &info);
  if (tppp_barrier(g, TPPP_SCOPE_WORLD) != TPPP_OK) return 1;
  if (info.rank == 1) {
    if (!stuck) raise(SIGKILL);
    sleep(5);
    tppp_group_destroy(g);
    return 0;
  }
  char buf[8];
  tppp_status s = tppp_recv(g, TPPP_SCOPE_WORLD, 1, 0, buf, sizeof buf, NULL);
  printf("rank 0 got %s: %s\n", tppp_status_string(s), tppp_last_error());
  fflush(stdout);
  tppp_group_destroy(g);
  return s == (stuck ? TPPP_ERR_TIMEOUT : TPPP_ERR_REMOTE) && strstr(tppp_last_error(), "rank 1") ? 3 : 1;
}
