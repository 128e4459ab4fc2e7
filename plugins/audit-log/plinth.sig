{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "0c97152d947ded84fda3d556ddd0a87afbbc9d7bfc4272e2db69d74cee1a4677",
    "package.json": "73d0fcaded3add12afc8e3ed96307ca4c64e87f60813b534d617315494ba1c01"
  },
  "signature": "4uHVgqCxLMnK/JU1dcH5r/oMnskEDlQihjICB/7ScLzzJ4CFgigJIZUrVg1FXIZXEVq96dmfEj7VuNGwMRZzDw=="
}
