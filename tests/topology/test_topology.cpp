#include <gtest/gtest.h>
// placeholder: tests come with the implementation
