{
  "format": "plinth-sig/1",
  "publisher": "plinth-dev",
  "keyId": "85082c7c0f1deea83d5680886070cf1f",
  "files": {
    "index.js": "21fe7ea81341379a5ce5eb75ba3788ab097c58ab1eefbd89c7ed7b5dd7e1802c",
    "package.json": "384b126f2439dd1e5ec5260753c81876a4eefcaedea883856348fdf0ba8f0484"
  },
  "signature": "BKx1XIBBTJXjPlsTQzJKpcTUwFHchqn6B0jjEH1ij0wOuomS1hjGoyN8DsJba2fbjet6Ph6sVnXUgNkvLO4SAA=="
}
