#include "output/json_out.h"

void json_site_add(json_object *o, const char *function, const char *file, long line)
{
	json_object_object_add(o, "function", json_object_new_string(function ? function : ""));
	json_object_object_add(o, "file", json_object_new_string(file ? file : ""));
	json_object_object_add(o, "line", json_object_new_int64(line));
}
