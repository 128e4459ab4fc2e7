{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "243cd7fc16baab55fa461f1024ddb9ede0e6404fd662a50a13a059ae1aa994a9",
    "package.json": "3bdcc8e28ed0505604b2c8285cb35a342c230a605c30f1e4d3d1d4c1299263c5"
  },
  "signature": "lZJKDdwvha/UO5SDfUcqF+cC9dQKM1MfMPqvBzXne4vbgQMCnrRrFkbCfMnFFxZcdsp5zsXf5Q+2wnDkTZFoCw=="
}
