/*
 * cmd_test.h — `cpbridge test PIPELINE CASES_DIR` (cmd_test.c): the face
 * main.c sees. Internal to core/cli.
 */
#ifndef CPB_CMD_TEST_H
#define CPB_CMD_TEST_H

/* Run the command with its arguments (argv[0] is "test"; argv is borrowed).
 * Prints TAP on stdout and its own messages on stderr. Returns the process
 * exit code (enum cpb_exit): 0 every case passed, 1 a case did not, 65 a
 * case file is bad, 64, 66, 69, 74, 78 as docs/CLI.md says. */
int cmd_test_main(int argc, char **argv);

#endif
